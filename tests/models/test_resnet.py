"""ResNetV2 (BiT) classifiers and the small 32 px ResNet: timm's parameter counts, and exact loads of original BiT
.npz files, timm state dicts and vitkit files, checked against an independent float64 NumPy forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitkit
from resnet_helpers import bit_reference, fake_bit_npz
from vitkit.config.resnet import MODELS, ResNetV2Config
from vitkit.weights import CheckpointError, detect_format

# Counted from timm 1.0.31's resnetv2.py / vision_transformer_hybrid.py (timm.create_model(name) on the meta
# device); the model cards round them (25.5M, 217.3M, 44.5M, 387.9M, 236.3M, 936.5M, 68.3M for in21k 50x1 ...).
TIMM_COUNTS = {
    "resnetv2_50x1_bit": 25_549_352,
    "resnetv2_50x3_bit": 217_319_080,
    "resnetv2_101x1_bit": 44_541_480,
    "resnetv2_101x3_bit": 387_934_888,
    "resnetv2_152x2_bit": 236_335_208,
    "resnetv2_152x4_bit": 936_533_224,
    "resnetv2_50x1_bit.goog_in21k": 68_256_659,  # timm.create_model(..., num_classes=21843)
    "resnetv2_101x3_bit.goog_in21k": 516_015_123,
    "resnetv2_152x4_bit.goog_in21k": 1_107_299_923,
    "vit_tiny_r_s16_p8_224": 6_337_704,
    "vit_tiny_r_s16_p8_384": 6_355_944,
    "vit_small_r26_s32_224": 36_431_912,
    "vit_small_r26_s32_384": 36_468_392,
    "vit_base_r50_s16_224": 97_890_112,  # timm's default tag (orig_in21k) has no head
    "vit_large_r50_s32_224": 328_994_856,
    "vit_large_r50_s32_384": 329_092_136,
}
# Our own 32 px nets (no timm counterpart), counted by hand: ResNet-20-like 16-32-64 and pre-act ResNet-18.
OWN_COUNTS = {"resnet_cifar20": 272_282, "resnet_cifar18": 11_172_170}


def _published(name: str) -> int:
    if name in TIMM_COUNTS:
        return TIMM_COUNTS[name]
    if name in OWN_COUNTS:
        return OWN_COUNTS[name]
    base, _, tag = name.partition(".")
    if base in TIMM_COUNTS:  # tags differ only in the head: 1000 or 21843 classes
        head = MODELS[name].num_features + 1
        return TIMM_COUNTS[base] + (MODELS[name].num_classes - 1000) * head
    raise AssertionError(f"{name} has no parameter-count entry; add timm's count to TIMM_COUNTS")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_has_timms_parameter_count(name):
    assert vitkit.count_parameters(name) == _published(name)


def test_resnet_cifar20_count_by_hand():
    """3x3 stem (3->16, 432) + stages of pre-act basic units: GN (2C each) + two 3x3 convs, 1x1 projections."""
    unit = lambda cin, c: 2 * cin + 9 * cin * c + 2 * c + 9 * c * c  # noqa: E731
    total = 3 * 9 * 16
    total += 3 * unit(16, 16)
    total += unit(16, 32) + 16 * 32 + 2 * unit(32, 32)
    total += unit(32, 64) + 32 * 64 + 2 * unit(64, 64)
    total += 2 * 64 + 64 * 10 + 10  # final GN, head
    assert total == OWN_COUNTS["resnet_cifar20"]


def _check(model, arrays, layers, size=32, groups=32, ws_eps=1e-10, batch=2):
    x = torch.from_numpy(np.random.default_rng(7).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32))
    with torch.no_grad():
        got = model(x).double()
    ref = torch.from_numpy(bit_reference(arrays, x.numpy(), layers, groups, ws_eps))
    assert ref.abs().max() > 1e-2
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def _npz(tmp_path, arrays, name="bit.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_bit_npz_loads_with_exact_logits(tmp_path):
    layers = (2, 1)
    arrays = fake_bit_npz(layers)
    path = _npz(tmp_path, arrays)
    assert detect_format(path) == "bit"
    model = vitkit.load_pretrained(path)
    cfg = model.cfg
    assert isinstance(cfg, ResNetV2Config) and cfg.layers == layers and cfg.width == 32 and cfg.num_classes == 5
    assert cfg.ws_eps == 1e-10 and cfg.padding == "symmetric" and cfg.mean == (0.5,) * 3
    _check(model, arrays, layers, size=36)  # 36 px: odd sizes after the stem exercise the padding


def test_bit_reference_can_fail(tmp_path):
    """The same weights with TensorFlow-'SAME' padding differ beyond the tolerance."""
    arrays = fake_bit_npz((1, 1), seed=2)
    model = vitkit.load_pretrained(_npz(tmp_path, arrays), padding="same")
    with pytest.raises(AssertionError):
        _check(model, arrays, (1, 1), size=36)


def test_timm_state_dict_and_vitkit_file_load_exactly(tmp_path):
    layers = (1, 2)
    arrays = fake_bit_npz(layers, seed=3)
    model = vitkit.load_pretrained(_npz(tmp_path, arrays))
    state = model.state_dict()
    # timm's ResNetV2 names (checked against timm.create_model('resnetv2_50x1_bit').state_dict()).
    for key, shape in {
        "stem.conv.weight": (32, 3, 7, 7),
        "stages.0.blocks.0.downsample.conv.weight": (128, 32, 1, 1),
        "stages.0.blocks.0.norm1.weight": (32,),
        "stages.0.blocks.0.conv3.weight": (128, 32, 1, 1),
        "stages.1.blocks.1.norm3.bias": (64,),
        "norm.weight": (256,),
        "head.fc.weight": (5, 256, 1, 1),
    }.items():
        assert tuple(state[key].shape) == shape, key
    timm_file = tmp_path / "timm.pth"
    torch.save(state, timm_file)
    assert detect_format(timm_file) == "timm"
    from_timm = vitkit.load_pretrained(timm_file, model="resnetv2_50x1_bit", ws_eps=1e-10)
    assert from_timm.cfg.layers == layers and from_timm.cfg.img_size == (448, 448)
    _check(from_timm, arrays, layers)
    vitkit.save_pretrained(from_timm, tmp_path / "own.safetensors")
    again = vitkit.load_pretrained(tmp_path / "own.safetensors")
    assert again.cfg == from_timm.cfg
    _check(again, arrays, layers)


def test_small_resnet_in_bit_layout_matches_reference(tmp_path):
    """Basic pre-activation units (the 32 px net), loaded from BiT's layout; GN with 8 groups from the name."""
    layers = (1, 1, 1)
    arrays = fake_bit_npz(layers, width=16, classes=10, basic=True, seed=4)
    model = vitkit.load_pretrained(_npz(tmp_path, arrays), model="resnet_cifar20")
    assert model.cfg.block == "preact_basic" and model.cfg.stem == "cifar" and model.cfg.gn_groups == 8
    _check(model, arrays, layers, groups=8)


def test_new_head_and_image_size_on_load(tmp_path):
    arrays = fake_bit_npz((1, 1), seed=5)
    model = vitkit.load_pretrained(_npz(tmp_path, arrays), num_classes=3)
    assert model.head.fc.weight.shape == (3, 256, 1, 1) and model.head.fc.weight.abs().sum() == 0
    assert model(torch.randn(1, 3, 40, 40)).shape == (1, 3)  # a CNN takes any size


def test_small_resnet_trains_and_offers_timm_methods():
    torch.manual_seed(0)
    model = vitkit.create_model("resnet_cifar20", drop_path_rate=0.1, width=8, img_size=16)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (8, 32)
    final, maps = model.eval().forward_intermediates(x)  # the stem's map, then each stage's
    assert [f.shape[-1] for f in maps] == [16, 16, 8, 4] and [i["reduction"] for i in model.feature_info] == [
        1,
        1,
        2,
        4,
    ]
    torch.testing.assert_close(final, model.forward_features(x))
    # values, not only shapes: the stem's map is the stem's output, the final map is the last stage's map through
    # the final pre-activation norm (GroupNorm + ReLU), and the head pools it by the mean
    with torch.no_grad():
        torch.testing.assert_close(maps[0], model.stem(x))
        norm = model.norm
        expected = torch.relu(F.group_norm(maps[-1], norm.num_groups, norm.weight, norm.bias, norm.eps))
        torch.testing.assert_close(final, expected)
        torch.testing.assert_close(model.forward_head(final, pre_logits=True), final.mean(dim=(2, 3)))
    model.train()
    model.set_grad_checkpointing()
    model.reset_classifier(4)
    assert model(x).shape == (8, 4) and model.num_classes == 4 and model.cfg.num_classes == 10
    assert "stem" in model.group_matcher()


def test_bad_inputs_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="gn_groups"):
        vitkit.get_config("resnet_cifar20", gn_groups=32)
    with pytest.raises(ValueError, match="expected 3 input channels"):
        vitkit.create_model("resnet_cifar20")(torch.randn(2, 1, 32, 32))
    bn = {"stem.conv.weight": torch.zeros(8, 3, 7, 7), "stages.0.blocks.0.norm1.running_mean": torch.zeros(8)}
    torch.save(bn, tmp_path / "bn.pth")
    with pytest.raises(CheckpointError, match="BatchNorm"):
        vitkit.load_pretrained(tmp_path / "bn.pth")
    arrays = fake_bit_npz((1,))
    del arrays["resnet/block1/unit01/b/group_norm/beta"]
    with pytest.raises(CheckpointError, match="missing.*unit01/b/group_norm/beta"):
        vitkit.load_pretrained(_npz(tmp_path, arrays))


def test_timm_hub_folder_names_the_model_and_its_preprocessing(tmp_path):
    """timm's save_pretrained folder: config.json (architecture + pretrained_cfg) beside model.safetensors."""
    import json

    from safetensors.torch import save_file

    arrays = fake_bit_npz((1, 1), seed=6)
    state = vitkit.load_pretrained(_npz(tmp_path, arrays)).state_dict()
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    hub = {"architecture": "resnetv2_50x1_bit", "num_classes": 5,
           "pretrained_cfg": {"tag": "goog_in21k", "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 0.875}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(hub))
    model = vitkit.load_pretrained(folder, ws_eps=1e-10)
    assert model.cfg.layers == (1, 1) and model.cfg.crop_pct == 0.875 and model.cfg.num_classes == 5
    _check(model, arrays, (1, 1))
