"""Adapters on a tiny ViT: exact identity at initialisation, gradients only where they belong, LoRA merging,
prompt tokens, the parameter report, and bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_config
from vitkit import VisionTransformer
from vitkit.adapters import AdapterConfig, add_adapters, merge_adapters, set_merged, trainable_parameters
from vitkit.families import build_model

ZERO_INIT = [
    AdapterConfig(method="bottleneck", bottleneck=8),
    AdapterConfig(method="parallel", bottleneck=8, scale=0.5),
    AdapterConfig(method="lora", rank=4, alpha=8, lora_mlp=True),
    AdapterConfig(method="bottleneck", bottleneck=8, head_adapter=8),  # encoder -> adapter -> head as well
    AdapterConfig(method="head", head_adapter=4),  # the head adapter alone
]


def _id(cfg: AdapterConfig) -> str:
    return cfg.method + (f"+head_adapter{cfg.head_adapter}" if cfg.head_adapter else "")


def _model(**changes) -> VisionTransformer:
    return VisionTransformer(tiny_config(**changes)).eval()


def _x(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("cfg", ZERO_INIT, ids=_id)
def test_zero_initialised_adapters_leave_logits_bit_identical(cfg: AdapterConfig) -> None:
    model = _model()
    with torch.no_grad():
        before = model(_x())
        add_adapters(model, cfg)
        after = model(_x())
    assert torch.equal(before, after)


@pytest.mark.parametrize("cfg", [*ZERO_INIT, AdapterConfig(method="prompt", num_prompts=3, deep=True)], ids=_id)
def test_only_adapter_and_head_parameters_get_gradients_and_change(cfg: AdapterConfig) -> None:
    model = _model(num_classes=3)
    add_adapters(model, cfg)
    model.train()
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    target = torch.tensor([0, 1, 2])
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(_x()), target).backward()
        opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    base_names = set(_model().state_dict())
    new_names = set(model.state_dict()) - base_names
    assert new_names and new_names <= changed  # every adapter tensor trained (zero-init B/up included)
    assert changed - new_names == {"head.weight", "head.bias"}
    assert grads == changed


def test_lora_merge_equals_unmerged_and_unmerge_restores() -> None:
    model = _model()
    add_adapters(model, AdapterConfig(method="lora", rank=4, alpha=8, lora_mlp=True))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)  # B starts at zero: give the update something to merge
        base_qkv = model.blocks[0].attn.qkv.weight.clone()
        unmerged = model(_x())
        set_merged(model, True)
        merged = model(_x())
        set_merged(model, False)
        again = model(_x())
        torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
        torch.testing.assert_close(model.blocks[0].attn.qkv.weight, base_qkv, atol=1e-6, rtol=0)
        torch.testing.assert_close(again, unmerged, atol=1e-6, rtol=0)
        plain = merge_adapters(model)
        assert set(plain.state_dict()) == set(_model().state_dict())
        torch.testing.assert_close(plain(_x()), unmerged, atol=1e-5, rtol=0)


def test_lora_update_matches_a_float64_hand_computation() -> None:
    model = _model()
    add_adapters(model, AdapterConfig(method="lora", rank=2, alpha=6, layers=(1,)))
    layer = model.blocks[1].attn.proj
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(5, 32)
    W, b = layer.weight.double(), layer.bias.double()
    A, B = layer.lora_A.double(), layer.lora_B.double()
    expected = x.double() @ (W + 3.0 * B @ A).T + b  # alpha / r = 3
    torch.testing.assert_close(layer(x).double(), expected, atol=1e-5, rtol=0)
    assert not hasattr(model.blocks[0].attn.qkv, "lora_A")  # layers=(1,) only


def test_prompt_tokens_sit_after_the_prefix_inside_the_blocks_only() -> None:
    model = _model(global_pool="avg")
    inside: list[torch.Tensor] = []
    model.blocks[1].attn.register_forward_pre_hook(lambda m, a: inside.append(a[0]))
    add_adapters(model, AdapterConfig(method="prompt", num_prompts=3, deep=True))
    with torch.no_grad():
        feats = model.forward_features(_x(2))
        out = model(_x(2))
        outside = model.get_intermediate_layers(_x(2), n=2, reshape=True)
    assert inside[0].shape == (2, 1 + 3 + 16, 32)  # cls + 3 prompts + 16 patches inside a block
    assert feats.shape == (2, 17, 32) and out.shape == (2, 5)  # the usual layout outside the blocks
    assert [tuple(o.shape) for o in outside] == [(2, 32, 4, 4)] * 2
    # Deep prompts: block 1 gets its own tokens at positions 1..3 (seen after its LayerNorm).
    torch.testing.assert_close(inside[0][0, 1:4], model.blocks[1].norm1(model.prompt_tokens.tokens[1]))


def test_shallow_prompts_carry_their_states_from_block_to_block() -> None:
    """Shallow VPT = the prompts appended to the input sequence once: compare with running the blocks by hand."""
    model = _model()
    add_adapters(model, AdapterConfig(method="prompt", num_prompts=2))
    with torch.no_grad():
        x = model.embed(_x(2))
        x = torch.cat([x[:, :1], model.prompt_tokens.tokens[0].expand(2, -1, -1), x[:, 1:]], dim=1)
        for block in model.blocks:
            x = block.forward(x)  # .forward() runs no hooks
        expected = model.forward_head(model.norm(torch.cat([x[:, :1], x[:, 3:]], dim=1)))
        torch.testing.assert_close(model(_x(2)), expected, atol=1e-6, rtol=0)


def test_trainable_report_counts_by_hand() -> None:
    model = _model(num_classes=5)
    total_base = sum(p.numel() for p in model.parameters())
    report = add_adapters(model, AdapterConfig(method="bottleneck", bottleneck=8))
    per_block = (32 * 8 + 8) + (8 * 32 + 32)  # down + up, with biases
    expected = 2 * per_block + (32 * 5 + 5)  # two blocks + head
    assert report.trainable == expected
    assert report.total == total_base + 2 * per_block
    assert trainable_parameters(model).share == pytest.approx(expected / report.total)
    assert "trainable parameters" in str(report)


def test_method_none_trains_everything() -> None:
    model = _model()
    report = add_adapters(model, AdapterConfig(method="none"))
    assert report.trainable == report.total


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: AdapterConfig(method="ia3"), "unknown adapter method"),
        (lambda: add_adapters(_model(), AdapterConfig(method="lora", rank=64)), "rank 64 exceeds the width 32"),
        (lambda: add_adapters(_model(), AdapterConfig(method="bottleneck", bottleneck=40)), "bottleneck 40 exceeds"),
        (lambda: add_adapters(_model(), AdapterConfig(method="lora", layers=(5,))), "out of range"),
        (lambda: AdapterConfig.from_dict({"methd": "lora"}), "unknown adapter field"),
        (lambda: merge_adapters(_with(AdapterConfig(method="bottleneck", bottleneck=4))), "cannot be merged"),
        (lambda: merge_adapters(_with(AdapterConfig(method="lora", head_adapter=4))), "head_adapter .*be merged"),
        (lambda: add_adapters(_model(), AdapterConfig(method="head", head_adapter=40)), "head_adapter 40 exceeds"),
        (lambda: AdapterConfig(method="none", head_adapter=8), "method none trains the whole model"),
        (lambda: AdapterConfig(method="lora", head_adapter=True), "width of the bottleneck .*got True"),
        (lambda: AdapterConfig(method="lora", head_adapter=-1), "width of the bottleneck .*got -1"),
    ],
)
def test_bad_input_names_problem_and_fix(make, words: str) -> None:
    with pytest.raises(ValueError, match=words) as err:
        make()
    assert "\n" not in str(err.value) and ";" in str(err.value)


def _with(cfg: AdapterConfig) -> VisionTransformer:
    model = _model()
    add_adapters(model, cfg)
    return model


@pytest.mark.parametrize("method", ["bottleneck", "prompt", "head_adapter"])
def test_deepcopy_keeps_hooks_on_the_copy(method: str) -> None:
    """EMA copies the model: the copy's hooks must drive the copy's adapters, not the original's."""
    cfg = AdapterConfig(method="head", head_adapter=4) if method == "head_adapter" else \
        AdapterConfig(method=method, bottleneck=4, deep=True)  # fmt: skip
    model = _with(cfg)
    with torch.no_grad():
        before = model(_x())
        twin = copy.deepcopy(model)
        param = {"bottleneck": lambda: twin.blocks[0].adapter.up.bias, "prompt": lambda: twin.prompt_tokens.tokens,
                 "head_adapter": lambda: twin.head_adapter.up.bias}[method]()  # fmt: skip
        param.fill_(1.0)
        assert not torch.equal(twin(_x()), before)
        assert torch.equal(model(_x()), before)


def _tiny_swin():
    swin = pytest.importorskip("vitkit.config.swin")
    cfg = swin.SwinConfig(
        img_size=16, patch_size=2, embed_dim=16, depths=(1, 2), num_heads=(2, 4), window_size=4, num_classes=3
    )
    return build_model(cfg).eval()


@pytest.mark.parametrize("method", ["lora", "bottleneck", "parallel"])
def test_swin_blocks_are_found_by_path_and_adapted(method: str) -> None:
    from vitkit.adapters import find_blocks

    model = _tiny_swin()
    paths = [p for p, _ in find_blocks(model)]
    assert paths == ["layers.0.blocks.0", "layers.1.blocks.0", "layers.1.blocks.1"]
    with torch.no_grad():
        before = model(_x(2))
    report = add_adapters(model, AdapterConfig(method=method, rank=2, bottleneck=4, layers=(-1,)))
    with torch.no_grad():
        assert torch.equal(model(_x(2)), before)
    widths = {n: p.shape for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head")}
    assert widths and all(n.startswith("layers.1.blocks.1.") for n in widths)  # layers=(-1,): the last block
    assert 0 < report.share < 0.2
    loss = model(_x(2)).logsumexp(-1).sum()
    loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


def test_prompt_tuning_on_swin_is_refused_with_the_alternative() -> None:
    with pytest.raises(ValueError, match="prompt tuning needs a plain token sequence.*Use lora"):
        add_adapters(_tiny_swin(), AdapterConfig(method="prompt"))


def test_prompt_tuning_with_a_relative_position_bias_is_refused_before_any_forward() -> None:
    model = _model(pos_embed="relative")
    with pytest.raises(ValueError, match="relative position bias.*use lora"):
        add_adapters(model, AdapterConfig(method="prompt"))
    assert not any("prompt" in name for name, _ in model.named_parameters())  # nothing was added


def test_frozen_batchnorm_statistics_do_not_move() -> None:
    """The conv stem's BatchNorm is part of the frozen backbone: training adapters must not update its buffers."""
    model = _model(stem_channels=(8, 16), stem_strides=(2, 2), patch_size=4)
    add_adapters(model, AdapterConfig(method="lora", rank=2))
    before = {k: v.clone() for k, v in model.state_dict().items() if "lora" not in k and not k.startswith("head")}
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(_x() * 3 + 1), torch.tensor([0, 1, 2])).backward()
        opt.step()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
