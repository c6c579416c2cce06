"""LoRA on the patch embedding's convolutions (``adapter.stem_rank``): exact identity at initialisation, the
update against a float64 convolution, gradients only in the LoRA factors and the head (BatchNorm buffers
still), merging into a plain checkpoint, the adapter file's round trip, and bad input."""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import tiny_config
from vitkit import VisionTransformer, load_pretrained, save_pretrained
from vitkit.adapters import AdapterConfig, add_adapters, attach_adapters, merge_adapters, save_adapters, set_merged
from vitkit.adapters.modules import LoRAConv2d

STEM = dict(stem_channels=(8, 16), stem_strides=(2, 2), patch_size=4)


def _model(**changes) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(tiny_config(**STEM, **changes)).eval()


def _x(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 + 0.5


def _perturb(model: nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.3)  # B starts at zero: give the update something to do


def test_every_stem_convolution_is_wrapped_and_starts_as_identity() -> None:
    model = _model()
    with torch.no_grad():
        before = model(_x())
        report = add_adapters(model, AdapterConfig(method="lora", rank=2, stem_rank=2))
        after = model(_x())
    assert torch.equal(before, after)
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoRAConv2d)]
    assert wrapped == ["patch_embed.convs.0", "patch_embed.convs.3", "patch_embed.proj"]
    # by hand: stem LoRA r (in k k + out) per conv; block LoRA r (D + 3D) + r (D + D) per block; head D*5 + 5
    stem = 2 * (3 * 9 + 8) + 2 * (8 * 9 + 16) + 2 * (16 + 32) + 2 * (8 + 16)  # + the stem's BatchNorm affines
    blocks = 2 * (2 * (32 + 96) + 2 * (32 + 32))
    assert report.trainable == stem + blocks + 32 * 5 + 5


def test_conv_update_matches_a_float64_hand_computation() -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    layer = LoRAConv2d.wrap(conv, rank=2, alpha=6)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(2, 4, 9, 9)
    A, B = layer.lora_A.double(), layer.lora_B.double()  # (2, 4, 3, 3), (6, 2)
    kernel = conv.weight.double() + 3.0 * torch.einsum("or,rikl->oikl", B, A)  # alpha / r = 3
    expected = F.conv2d(x.double(), kernel, conv.bias.double(), stride=2, padding=1)
    torch.testing.assert_close(layer(x).double(), expected, atol=1e-5, rtol=0)


def test_only_lora_factors_the_stem_norms_and_head_train() -> None:
    """The stem's BatchNorm trains with its adapted convolutions (affine and running statistics); the blocks and
    every frozen weight stay as loaded."""
    model = _model(num_classes=3)
    add_adapters(model, AdapterConfig(method="head", stem_rank=2))
    before = copy.deepcopy(model.state_dict())
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(_x()), torch.tensor([0, 1, 2])).backward()
        opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    lora = {k for k in before if "lora_" in k}
    norms = {f"patch_embed.convs.{i}.{k}" for i in (1, 4) for k in ("weight", "bias", "running_mean", "running_var",
                                                                       "num_batches_tracked")}  # fmt: skip
    assert len(lora) == 6 and changed == lora | norms | {"head.weight", "head.bias"}


def test_merge_folds_the_stem_into_a_plain_model() -> None:
    model = _model()
    add_adapters(model, AdapterConfig(method="lora", rank=2, stem_rank=2))
    _perturb(model)
    with torch.no_grad():
        unmerged = model(_x())
        set_merged(model, True)
        torch.testing.assert_close(model(_x()), unmerged, atol=1e-5, rtol=0)
        set_merged(model, False)
        plain = merge_adapters(model)
        assert set(plain.state_dict()) == set(_model().state_dict())
        assert type(plain.patch_embed.convs[0]) is nn.Conv2d
        torch.testing.assert_close(plain(_x()), unmerged, atol=1e-5, rtol=0)


def test_adapter_file_round_trips_exactly(tmp_path: Path) -> None:
    base = save_pretrained(_model(), tmp_path / "base.safetensors")
    model = load_pretrained(base)
    add_adapters(model, AdapterConfig(method="parallel", bottleneck=4, stem_rank=2))
    _perturb(model)
    path = save_adapters(model.eval(), tmp_path / "adapters.safetensors")
    restored = attach_adapters(partial(load_pretrained, base), path)
    with torch.no_grad():
        assert torch.equal(restored(_x()), model(_x()))


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: add_adapters(_model(), AdapterConfig(method="lora", stem_rank=40)), "stem_rank 40 exceeds the width"),
        (lambda: AdapterConfig(method="none", stem_rank=4), "method none trains the whole model"),
        (lambda: AdapterConfig(method="lora", stem_rank=-1), "stem_rank must be >= 0"),
        (lambda: LoRAConv2d.wrap(nn.Conv2d(4, 4, 3, groups=2), 2, 4.0), "groups 1"),
    ],
)
def test_bad_input_names_problem_and_fix(make, words: str) -> None:
    with pytest.raises(ValueError, match=words) as err:
        make()
    assert "\n" not in str(err.value) and ";" in str(err.value)
