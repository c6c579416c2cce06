"""The minimal ViT of examples/minimal_vit.py: vitkit's logits after conversion, loud size errors, and the
batch_first pitfall of nn.MultiheadAttention that its comment warns about."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from torch import nn

import vitkit
from paths import REPO


def _load_example():
    # examples/ is not a package: import the file by path.
    spec = importlib.util.spec_from_file_location("minimal_vit", REPO / "examples" / "minimal_vit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mv = _load_example()


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    reference = vitkit.create_model("vit_base_patch16_224").eval()
    return reference, mv.from_vitkit(reference).eval()


def test_from_vitkit_gives_vitkits_logits(models) -> None:
    reference, minimal = models
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(images), minimal(images)
    assert expected.shape == (2, 1000)
    assert expected.std() > 0.1  # a real comparison, not of two near-zero heads
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 3, 230, 230), (1, 3, 256, 256), (1, 1, 224, 224), (3, 224, 224)])
def test_wrong_input_size_raises(models, shape) -> None:
    # 230x230 would otherwise pass silently: the convolution drops the last 6 pixels of each side.
    with pytest.raises(ValueError, match=r"expected \(B, 3, 224, 224\)"):
        models[1](torch.zeros(shape))


def test_from_vitkit_rejects_what_no_shape_reveals() -> None:
    tiny = "vit_tiny_patch16_224"  # one block is enough: the settings are checked before any weight
    with pytest.raises(ValueError, match="act_layer"):
        mv.from_vitkit(vitkit.create_model(tiny, depth=1, num_heads=12, act_layer="gelu_tanh"))
    with pytest.raises(ValueError, match="num_heads"):
        mv.from_vitkit(vitkit.create_model(tiny, depth=1))
    with pytest.raises(RuntimeError, match="size mismatch"):  # right settings, wrong width: the shapes tell
        mv.from_vitkit(vitkit.create_model(tiny, depth=1, num_heads=12))


def test_batch_first_keeps_images_apart() -> None:
    block = mv.Block().eval()
    pitfall = copy.deepcopy(block)
    pitfall.attn = nn.MultiheadAttention(mv.D, mv.HEADS)  # the default, batch_first=False
    pitfall.attn.load_state_dict(block.attn.state_dict())  # same weights: only the axis convention differs
    image = torch.randn(1, 5, mv.D)  # (B, N, D): one image of 5 tokens
    batch_a = torch.cat([image, torch.randn(2, 5, mv.D)])  # the same image next to two different neighbours
    batch_b = torch.cat([image, torch.randn(2, 5, mv.D)])
    with torch.no_grad():
        torch.testing.assert_close(block(batch_a)[0], block(batch_b)[0])
        torch.testing.assert_close(block(batch_a)[0], block(image)[0])
        # batch_first=False attends across dim 0: token j of each image mixes with token j of the other images.
        assert (pitfall(batch_a)[0] - pitfall(batch_b)[0]).abs().max() > 0.1
