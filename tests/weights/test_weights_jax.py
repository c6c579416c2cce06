"""Original JAX checkpoints (.npz): built here from the documented key layout, loaded, and checked against an
independent float64 NumPy forward pass of the JAX model (tanh GELU, eps 1e-6, SAME padding, standardised convs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vitkit
from vitkit.weights import CheckpointError, detect_format
from weights_helpers import BIG_VISION, VIT_JAX, add_resnet, fake_vit_npz, reference_forward


def _save(tmp_path, arrays, name="ckpt.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _check_logits(model, arrays, img, layout=VIT_JAX, layers=None, batch=2):
    x = torch.from_numpy(np.random.default_rng(5).uniform(-1, 1, (batch, 3, img, img)).astype(np.float32))
    with torch.no_grad():
        got = model(x).double()
    ref = torch.from_numpy(reference_forward(arrays, x.numpy(), layout, layers))
    assert ref.abs().max() > 1e-2  # a non-trivial output, so the comparison can fail
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize(
    "kind, kwargs",
    [
        ("token", {}),
        ("pre_logits", {"pre_logits": 12}),
        ("gap", {"cls": False}),
        ("opt_target_prefix", {"prefix": "opt/target/"}),
        ("no_head", {"classes": 0}),
    ],
)
def test_vit_jax_layouts_load_with_exact_logits(tmp_path, kind, kwargs):
    prefix = kwargs.get("prefix", "")
    arrays = fake_vit_npz(**kwargs)
    path = _save(tmp_path, arrays)
    assert detect_format(path) == "jax"
    model = vitkit.load_pretrained(path)
    cfg = model.cfg
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_dim, cfg.patch_size, cfg.img_size) == (
        16, 2, 2, 32, (4, 4), (8, 8),
    )  # fmt: skip
    assert cfg.act_layer == "gelu_tanh" and cfg.norm_eps == 1e-6 and cfg.mean == (0.5,) * 3
    assert cfg.class_token == kwargs.get("cls", True)
    assert cfg.global_pool == ("token" if cfg.class_token else "avg")
    assert cfg.representation_size == kwargs.get("pre_logits")
    assert cfg.num_classes == kwargs.get("classes", 3)
    unprefixed = {k[len(prefix) :]: v for k, v in arrays.items()}
    _check_logits(model, unprefixed, 8)


def test_exact_gelu_would_not_match(tmp_path):
    """The check above can fail: the same weights with PyTorch's exact GELU differ beyond the tolerance."""
    arrays = fake_vit_npz(seed=3)
    model = vitkit.load_pretrained(_save(tmp_path, arrays), act_layer="gelu")
    with pytest.raises(AssertionError):
        _check_logits(model, arrays, 8)


@pytest.mark.parametrize("cls", [True, False], ids=["tok", "gap"])
def test_big_vision_layout(tmp_path, cls):
    """big_vision: 'params/' prefix, LayerNorm_0/1, *_0 modules, and position embeddings added before [class]."""
    arrays = fake_vit_npz(layout=BIG_VISION, prefix="params/", cls=cls, seed=1)
    model = vitkit.load_pretrained(_save(tmp_path, arrays))
    assert model.pos_embed.shape == (1, 4 + int(cls), 16)
    if cls:
        assert torch.equal(model.pos_embed[0, 0], torch.zeros(16))  # [class] gets no position embedding
    _check_logits(model, {k[len("params/") :]: v for k, v in arrays.items()}, 8, BIG_VISION)


def test_hybrid_r50_layout_matches_reference(tmp_path):
    layers = (1, 1)
    arrays = fake_vit_npz(patch=1, grid=4, width=16, depth=1, seed=2)
    chans = add_resnet(arrays, layers, width=32)
    arrays["embedding/kernel"] = np.random.default_rng(4).standard_normal((1, 1, chans, 16)).astype(np.float32) * 0.1
    model = vitkit.load_pretrained(_save(tmp_path, arrays))
    cfg = model.cfg
    assert cfg.backbone_layers == layers and cfg.backbone_width == 32 and cfg.patch_stride == (8, 8)
    assert cfg.img_size == (32, 32) and cfg.patch_size == (1, 1)
    _check_logits(model, arrays, 32, layers=layers)


def test_registered_hybrid_has_the_published_parameter_count():
    """timm's vit_base_r50_s16_384 (R50+ViT-B/16 at 384 px): 98,950,952 parameters with a 1000-class head."""
    assert vitkit.count_parameters("vit_base_r50_s16_384") == 98_950_952
    cfg = vitkit.get_config("vit_base_r50_s16_384")
    assert cfg.grid_size == (24, 24) and cfg.backbone_layers == (3, 4, 9)


def test_same_padding_is_asymmetric_like_tensorflow():
    from vitkit.models.resnet_stem import pad_same

    x = torch.ones(1, 1, 32, 32)
    padded = pad_same(x, 7, 2)  # total (16-1)*2 + 7 - 32 = 5: 2 before, 3 after
    assert padded.shape[-2:] == (37, 37)
    assert padded[0, 0, 2:-3, 2:-3].eq(1).all() and padded[0, 0, :2].eq(0).all() and padded[0, 0, -3:].eq(0).all()


def test_named_model_supplies_preprocessing_and_img_size_override_resamples(tmp_path, caplog):
    arrays = fake_vit_npz()
    path = _save(tmp_path, arrays)
    model = vitkit.load_pretrained(path, model="deit_tiny_patch16_224")
    assert model.cfg.mean == (0.485, 0.456, 0.406) and model.cfg.embed_dim == 16  # sizes still from the arrays
    with caplog.at_level("INFO", logger="vitkit.weights"):
        bigger = vitkit.load_pretrained(path, img_size=16, num_classes=7)
    assert bigger.cfg.grid_size == (4, 4) and bigger.pos_embed.shape == (1, 17, 16)
    assert "resampled position embeddings from a 2x2 to a 4x4" in caplog.text
    assert "dropped the checkpoint's 3-class head for a new 7-class one" in caplog.text
    assert bigger(torch.randn(1, 3, 16, 16)).abs().max() == 0  # zero head


def test_unsupported_and_malformed_npz(tmp_path):
    arrays = fake_vit_npz()
    arrays["MAPHead_0/probe"] = np.zeros((1, 1, 16), np.float32)
    with pytest.raises(CheckpointError, match=r"attention-pooling \(MAP\) head.*MAPHead_0/probe"):
        vitkit.load_pretrained(_save(tmp_path, arrays, "map.npz"))
    arrays = fake_vit_npz()
    del arrays["Transformer/encoderblock_1/MlpBlock_3/Dense_1/bias"]
    with pytest.raises(CheckpointError, match="missing.*Dense_1/bias.*blocks.1.mlp.fc2.bias"):
        vitkit.load_pretrained(_save(tmp_path, arrays, "partial.npz"))
    with pytest.raises(
        CheckpointError,
        match="tensors with unknown names .* expected a vit_jax / big_vision .npz \\('embedding/kernel'\\)",
    ):
        vitkit.load_pretrained(_save(tmp_path, {"foo": np.zeros(3)}, "other.npz"))


def test_weight_standardisation_follows_vit_jax_formula():
    """(w - mean) / (std + 1e-5) per output channel; with a tiny spread the epsilon's placement shows."""
    from vitkit.models.resnet_stem import StdConv2dSame

    conv = StdConv2dSame(2, 3, 3)
    with torch.no_grad():
        conv.weight.copy_(1e-5 * (torch.randn(3, 2, 3, 3) + 0.5))
    w = conv.weight.detach().double().numpy()
    mean, std = w.mean(axis=(1, 2, 3), keepdims=True), w.std(axis=(1, 2, 3), keepdims=True)
    expected = torch.from_numpy((w - mean) / (std + 1e-5))
    torch.testing.assert_close(conv.standardized_weight().double(), expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(expected, torch.from_numpy((w - mean) / np.sqrt(std**2 + 1e-8)), atol=1e-2)
