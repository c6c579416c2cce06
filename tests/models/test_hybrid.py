"""The AugReg hybrid family (R+Ti/16 root-only, R26+S/32, R50+B/16, R50+L/32): each layout loads from an original
JAX .npz, a timm state dict and a vitkit file, reproducing an independent float64 NumPy forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vitkit
from vitkit.weights import detect_format
from weights_helpers import add_resnet, fake_vit_npz, reference_forward

# (ResNet stages, ViT patch size on the ResNet's map, image size): root only, one stage, four stages (/32: 1 token).
LAYOUTS = {"root_only": ((), 2, 16), "r1": ((2,), 1, 16), "r4": ((1, 1, 1, 1), 1, 32)}


def _hybrid_npz(layers, patch, img, seed=0):
    stride = 4 * 2 ** max(len(layers) - 1, 0)
    arrays = fake_vit_npz(patch=patch, grid=img // (stride * patch), width=16, depth=1, seed=seed)
    chans = add_resnet(arrays, layers, width=32, seed=seed + 1)
    rng = np.random.default_rng(seed + 2)
    arrays["embedding/kernel"] = (rng.standard_normal((patch, patch, chans, 16)) * 0.1).astype(np.float32)
    return arrays


def _check(model, arrays, img, layers):
    x = torch.from_numpy(np.random.default_rng(5).uniform(-1, 1, (2, 3, img, img)).astype(np.float32))
    with torch.no_grad():
        got = model(x).double()
    ref = torch.from_numpy(reference_forward(arrays, x.numpy(), layers=layers))
    assert ref.abs().max() > 1e-2
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_hybrid_layout_loads_from_jax_timm_and_vitkit(tmp_path, layout):
    layers, patch, img = LAYOUTS[layout]
    arrays = _hybrid_npz(layers, patch, img)
    np.savez(tmp_path / "jax.npz", **arrays)
    assert detect_format(tmp_path / "jax.npz") == "jax"
    model = vitkit.load_pretrained(tmp_path / "jax.npz")
    assert model.cfg.backbone_layers == layers and model.cfg.patch_size == (patch, patch)
    assert model.cfg.img_size == (img, img)
    _check(model, arrays, img, layers)

    state = model.state_dict()
    # timm's names: a root-only backbone is the stem itself (vit_tiny_r_s16_p8_224), else backbone.stem.*
    stem = "patch_embed.backbone." + ("" if not layers else "stem.")
    assert state[stem + "conv.weight"].shape == (32, 3, 7, 7) and state[stem + "norm.bias"].shape == (32,)
    torch.save(state, tmp_path / "timm.pth")
    assert detect_format(tmp_path / "timm.pth") == "timm"
    # A timm file carries no numerics: timm runs these weights with exact GELU; ask for JAX's tanh GELU here.
    from_timm = vitkit.load_pretrained(tmp_path / "timm.pth", num_heads=2, act_layer="gelu_tanh")
    _check(from_timm, arrays, img, layers)

    vitkit.save_pretrained(from_timm, tmp_path / "own.safetensors")
    _check(vitkit.load_pretrained(tmp_path / "own.safetensors"), arrays, img, layers)


def test_root_only_hybrid_is_not_refused_and_names_follow_timm():
    """vit_tiny_r_s16_p8_224: the ResNet root (/4) and 8x8 patches on its map, a 7x7 grid at 224 px."""
    cfg = vitkit.get_config("vit_tiny_r_s16_p8_224")
    assert cfg.backbone_layers == () and cfg.patch_stride == (32, 32) and cfg.grid_size == (7, 7)
    with torch.device("meta"):
        keys = [k for k in vitkit.create_model("vit_tiny_r_s16_p8_224").state_dict() if "backbone" in k]
    assert keys == ["patch_embed.backbone.conv.weight", "patch_embed.backbone.norm.weight",
                    "patch_embed.backbone.norm.bias"]  # fmt: skip


@pytest.mark.parametrize(
    "name, layers, stride",
    [
        ("vit_small_r26_s32_384", (2, 2, 2, 2), 32),
        ("vit_large_r50_s32_224", (3, 4, 6, 3), 32),
        ("vit_base_r50_s16_224", (3, 4, 9), 16),
    ],  # fmt: skip
)
def test_registered_hybrid_geometry(name, layers, stride):
    cfg = vitkit.get_config(name)
    assert cfg.backbone_layers == layers and cfg.patch_stride == (stride, stride)
    assert cfg.grid_size == (cfg.img_size[0] // stride,) * 2
