"""ViT-Adapter: parameter counts and outputs against the original code, loading a plain ViT into its ViT part
(positions against a NumPy bicubic), the windowed attention and layer scale it adds to vitkit's Block, the method
set, and bad configurations and inputs.

The fixture was written by running czczup/ViT-Adapter's own backbone code (segmentation/mmseg_custom/models/
backbones/, mmcv/mmseg/timm stubbed, the CUDA op replaced by the original's pure-PyTorch core) in a scratch folder
(/tmp/ref_vit_adapter, make_fixture.py): two tiny models (plain; windowed attention + layer scale) with seeded random
weights rounded to float16, run in float32 in eval mode; it holds their state dicts under the original key names,
constructor arguments, inputs and four output maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vitkit
from paths import REPO
from train_data import one_thread  # noqa: F401  (fixture)
from vitkit.config.vit_adapter import MODELS, ViTAdapterConfig
from vitkit.layers.attention import Attention
from vitkit.layers.block import Block
from vitkit.models.vit_adapter import ViTAdapter
from vitkit.weights.vit_adapter import config_from_mmseg, from_original, to_original, vit_to_adapter

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only contend
FIXTURE = REPO / "tests" / "fixtures" / "vit_adapter_original_tiny.pt"

# Parameter counts of the ORIGINAL backbones with these settings (the ADE20K UperNet configs' backbones, 224 px
# pre-training grid), printed by /tmp/ref_vit_adapter/count_params.py, which builds czczup/ViT-Adapter's own
# segmentation/mmseg_custom/models/backbones/vit_adapter.py (mmcv/mmseg/timm stubbed, the CUDA op replaced by its
# pure-PyTorch reference). The large model at the original's 384 px grid has 326,924,480.
ORIGINAL_COUNTS = {
    "vit_adapter_tiny_patch16": 7_962_032,
    "vit_adapter_small_patch16": 27_494_672,
    "vit_adapter_base_patch16": 99_476_960,
    "vit_adapter_large_patch16": 326_535_360,
}


def tiny(**changes) -> ViTAdapterConfig:
    fields = dict(img_size=64, embed_dim=32, depth=4, num_heads=2, mlp_dim=64, deform_num_heads=2, deform_ratio=0.5)
    fields.update(conv_inplane=8, interaction_indexes=((0, 0), (1, 1), (2, 2), (3, 3)), pretrain_size=48)
    return ViTAdapterConfig(**{**fields, **changes})


# ------------------------------------------------------------------------------------- against the original
def test_every_named_model_has_an_original_count():
    assert sorted(MODELS) == sorted(ORIGINAL_COUNTS)


@pytest.mark.parametrize("name", sorted(ORIGINAL_COUNTS))
def test_parameter_counts_equal_the_originals(name):
    with torch.device("meta"):
        model = ViTAdapter(MODELS[name])
    assert sum(p.numel() for p in model.parameters()) == ORIGINAL_COUNTS[name]


@pytest.fixture(scope="module")
def original():
    return torch.load(FIXTURE, weights_only=True)


@pytest.mark.parametrize("case", ["plain", "windowed_layer_scale"])
def test_outputs_equal_the_originals(original, case):
    ref = original[case]
    x = ref["input"].float()
    cfg = config_from_mmseg(ref["kwargs"], img_size=tuple(x.shape[-2:]))
    assert cfg.layer_scale == (1.0 if case != "plain" else None) and any(cfg.windowed) == (case != "plain")
    model = ViTAdapter(cfg).eval()
    state = from_original({k: v.float() if v.is_floating_point() else v for k, v in ref["state_dict"].items()})
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        outputs = model(x)
    assert [o.shape for o in outputs] == [o.shape for o in ref["outputs"]]
    for mine, theirs in zip(outputs, ref["outputs"]):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)  # |outputs| up to ~11; measured max diff 1e-5


def test_original_key_names_round_trip(original):
    state = original["windowed_layer_scale"]["state_dict"]
    mine = from_original({"backbone." + k: v for k, v in state.items()} | {"decode_head.conv_seg.weight": 0})
    assert "blocks.0.ls1.gamma" in mine and "blocks.0.gamma1" not in mine and "decode_head.conv_seg.weight" not in mine
    assert to_original(mine) == dict(state)


# --------------------------------------------------------------------------------------- a plain ViT inside
def numpy_bicubic(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, D) -> (H, W, D) by Keys' cubic convolution (a = -0.75), half-pixel centres, edge pixels repeated, no
    antialiasing: the interpolation PyTorch's ``bicubic`` with align_corners=False computes."""

    def matrix(n_in: int, n_out: int) -> np.ndarray:
        a, out = -0.75, np.zeros((n_out, n_in))
        for i in range(n_out):
            src = (i + 0.5) * n_in / n_out - 0.5
            x0 = math.floor(src)
            for k in range(-1, 3):
                d = abs(src - (x0 + k))
                w = ((a + 2) * d - (a + 3)) * d * d + 1 if d <= 1 else ((d - 5) * d + 8) * d * a - 4 * a
                out[i, min(max(x0 + k, 0), n_in - 1)] += w
        return out

    return np.einsum("Hh,hwd,Ww->HWd", matrix(grid.shape[0], size[0]), grid, matrix(grid.shape[1], size[1]))


@pytest.mark.parametrize("pretrain", [224, 384], ids=["same-grid", "14x14-to-24x24"])
def test_a_plain_vit_loads_into_the_vit_part(pretrain):
    vit = vitkit.create_model("deit_tiny_patch16_224", depth=2).state_dict()
    two_blocks = dict(depth=2, interaction_indexes=((0, 0), (1, 1)), add_vit_feature=False, conv_inplane=8)
    cfg = MODELS["vit_adapter_tiny_patch16"].replace(**two_blocks, pretrain_size=pretrain)
    model = ViTAdapter(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = model.load_state_dict(vit_to_adapter(vit, cfg), strict=False)
    vit_part = ("patch_embed.", "pos_embed", "blocks.")
    assert not result.unexpected_keys
    adapter_keys = [k for k in before if not k.startswith(vit_part) and not k.endswith("num_batches_tracked")]
    assert sorted(result.missing_keys) == sorted(adapter_keys)
    after = model.state_dict()
    for key in before:
        if key.startswith(("patch_embed.", "blocks.")):
            assert torch.equal(after[key], vit[key])
        elif not key.startswith(vit_part):
            assert torch.equal(after[key], before[key])  # the adapter keeps its initialisation
    assert torch.equal(after["pos_embed"][:, 0], vit["pos_embed"][:, 0])  # the class token's row, unused
    side = pretrain // 16
    expected = numpy_bicubic(vit["pos_embed"][0, 1:].reshape(14, 14, -1).double().numpy(), (side, side))
    np.testing.assert_allclose(after["pos_embed"][0, 1:].numpy(), expected.reshape(side * side, -1), atol=2e-6)


def test_loading_a_vit_of_another_size_names_the_mismatch():
    vit = vitkit.create_model("deit_small_patch16_224", depth=1).state_dict()
    with pytest.raises(ValueError, match=r"patch projection \(384, 3, 16, 16\) does not fit the adapter's \(192,"):
        vit_to_adapter(vit, MODELS["vit_adapter_tiny_patch16"])


# ------------------------------------------------------------------------------------------- the model
def test_pyramid_shapes_feature_info_and_method_set():
    model = ViTAdapter(tiny()).eval()
    x = torch.randn(2, 3, 64, 96)  # non-square, and not the configured size: positions are resampled
    maps = model(x)
    assert [tuple(m.shape) for m in maps] == [(2, 32, 64 // s, 96 // s) for s in (4, 8, 16, 32)]
    assert [(f["num_chs"], f["reduction"], f["module"]) for f in model.feature_info] == [
        (32, s, f"norm{i + 1}") for i, s in enumerate((4, 8, 16, 32))
    ]
    picked = model.forward_intermediates(x, [1, 3], intermediates_only=True)
    for a, b in zip(picked, (maps[1], maps[3])):
        torch.testing.assert_close(a, b)
    names = dict(model.named_parameters())
    assert model.no_weight_decay() == {"pos_embed", "level_embed"} and model.no_weight_decay() <= set(names)
    alone = model(x[1:])
    torch.testing.assert_close(alone[0][0], maps[0][1], rtol=1e-5, atol=1e-5)


def test_initialisation_follows_the_original():
    model = ViTAdapter(tiny(init_values=0.0))
    for interaction in model.interactions:
        assert not interaction.injector.gamma.any()  # the adapter starts as a no-op on the ViT's tokens
        assert not interaction.injector.attn.attention_weights.weight.any()
    conv = model.spm.conv3[0]  # He-normal on fan-out: std sqrt(2 / (3 * 3 * 32))
    assert abs(conv.weight.std().item() - math.sqrt(2 / (9 * 32))) < 0.01
    assert abs(model.level_embed.std().item() - 1.0) < 0.2 and model.pos_embed.std() < 0.03


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = ViTAdapter(tiny(init_values=0.5, layer_scale=0.5))
    x = torch.randn(1, 3, 64, 64)
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        sum((m * m).mean() for m in model(x)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("size", [(100, 128), (64, 48)])
def test_an_input_the_pyramid_cannot_divide_is_one_clear_error(size):
    model = ViTAdapter(tiny())
    with pytest.raises(ValueError) as err:
        model(torch.randn(1, 3, *size))
    message = str(err.value)
    assert "\n" not in message and f"{size[0]}x{size[1]} is not divisible by 32" in message
    assert f"e.g. {round(size[0] / 32) * 32}x{round(size[1] / 32) * 32}" in message


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(img_size=500), r"img_size 500x500 is not divisible by 32 \(the pyramid reaches 1/32\); use 512x512"),
        (dict(interaction_indexes=((0, 1), (3, 3))), r"must split blocks 0..3 into consecutive \[first, last\] ranges"),
        (dict(deform_num_heads=3), r"width 32 is not divisible by deform_num_heads 3"),
        (dict(patch_size=8), r"patch_size \(8, 8\) is not supported"),
        (dict(window_attn=(True, False)), r"window_attn has 2 entries for 4 blocks"),
    ],
)
def test_bad_configurations_are_one_line_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny(**changes)


def test_config_round_trips_through_a_dict():
    cfg = MODELS["vit_adapter_large_patch16"]
    assert ViTAdapterConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.interaction_indexes == ((0, 5), (6, 11), (12, 17), (18, 23))
    vit = cfg.vit_config()
    assert (vit.embed_dim, vit.depth, vit.img_size, vit.num_classes, vit.class_token) == (1024, 24, (224, 224), 0, True)


# ------------------------------------------------------------------ layer scale and windows in vitkit's Block
def test_block_options_keep_the_default_state_dict_and_add_timms_names():
    plain = set(Block(8, 2, 16).state_dict())
    assert not any("ls" in k for k in plain)
    scaled = Block(8, 2, 16, layer_scale=0.1, window_size=2).state_dict()
    assert set(scaled) == plain | {"ls1.gamma", "ls2.gamma"}
    assert torch.equal(scaled["ls1.gamma"], torch.full((8,), 0.1))


def test_windowed_attention_equals_a_brute_force_with_the_originals_zero_padding():
    torch.manual_seed(1)
    H, W, M, D, heads = 5, 7, 3, 8, 2  # 3x3 windows pad the 5x7 grid to 6x9
    attn = Attention(D, heads, window_size=M).double()
    x = torch.randn(2, H * W, D, dtype=torch.float64)
    out = attn(x, grid=(H, W)).detach().numpy()

    w = {k: v.detach().numpy() for k, v in attn.state_dict().items()}
    qkv = np.zeros((2, 6, 9, 3 * D))  # zeros where padded: after the projection, biases included, as the original
    qkv[:, :H, :W] = (x.numpy() @ w["qkv.weight"].T + w["qkv.bias"]).reshape(2, H, W, 3 * D)
    expected = np.zeros((2, H, W, D))
    for b in range(2):
        for i in range(H):
            for j in range(W):
                r, c = i // M * M, j // M * M
                window = qkv[b, r : r + M, c : c + M].reshape(M * M, 3, heads, D // heads)
                q = qkv[b, i, j].reshape(3, heads, D // heads)[0]
                for h in range(heads):
                    logits = window[:, 1, h] @ q[h] / math.sqrt(D // heads)  # padded keys: logit 0, not masked
                    p = np.exp(logits - logits.max())
                    expected[b, i, j, h * (D // heads) : (h + 1) * (D // heads)] = p @ window[:, 2, h] / p.sum()
    expected = expected.reshape(2, H * W, D) @ w["proj.weight"].T + w["proj.bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="needs the token grid"):
        attn(x)
