"""Named models: exact parameter counts for every registry entry, and the factory's behaviour."""

from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.registry import MODEL_CONFIGS

transformers = pytest.importorskip("transformers")

# Published counts (timm / the paper's 86M, 307M, 632M), with a 1000-class head.
PUBLISHED = {
    "vit_base_patch16_224": 86_567_656,
    "vit_large_patch16_224": 304_326_632,
    "vit_huge_patch14_224": 632_045_800,
}


def _hf_count(cfg: vitkit.ViTConfig) -> int:
    """Parameter count of transformers' ViTForImageClassification with the same architecture (meta device)."""
    hf_cfg = transformers.ViTConfig(
        hidden_size=cfg.embed_dim,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_dim,
        image_size=list(cfg.img_size),
        patch_size=cfg.patch_size[0],
        num_channels=cfg.in_chans,
        num_labels=cfg.num_classes,
        qkv_bias=cfg.qkv_bias,
    )
    with torch.device("meta"):
        model = transformers.ViTForImageClassification(hf_cfg)
    return sum(p.numel() for p in model.parameters())


def _expected_count(name: str, cfg: vitkit.ViTConfig) -> int:
    base = _hf_count(cfg.replace(distilled=False, stem_channels=None, stem_strides=None))
    if cfg.stem_channels is not None:  # swap the PxP patch projection for 3x3 convs + BN and a 1x1 projection
        D, P, c_in = cfg.embed_dim, cfg.patch_size[0], cfg.in_chans
        base -= D * c_in * P * P + D
        for c_out in cfg.stem_channels:
            base += c_in * c_out * 9 + 2 * c_out
            c_in = c_out
        base += c_in * D + D
    if cfg.distilled:  # DeiT: a [dist] token, its position entry, and a second head
        base += 2 * cfg.embed_dim + cfg.embed_dim * cfg.num_classes + cfg.num_classes
    return base


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts(name):
    assert vitkit.count_parameters(name) == PUBLISHED[name]


# Plain ViTs here, against transformers; every other family (and the hybrids) against its own reference in its
# own test file (tests/models/test_{mae,swin,resnet,vit_adapter,segmentor}.py), each failing on a missing entry.
PLAIN_VITS = sorted(n for n, c in MODEL_CONFIGS.items() if c.family == "vit" and c.backbone_layers is None)


def test_every_family_has_a_count_test():
    families = {c.family for c in MODEL_CONFIGS.values()}
    assert families == {"vit", "mae", "swin", "resnetv2", "vit_adapter", "segmentor"}, "add a count test for it"


@pytest.mark.parametrize("name", PLAIN_VITS)
def test_every_registered_model_matches_the_reference_count(name):
    cfg = vitkit.get_config(name)
    assert vitkit.count_parameters(cfg) == _expected_count(name, cfg)


def test_list_and_create():
    assert "vit_base_patch16_224" in vitkit.list_models()
    assert vitkit.list_models("deit_*distilled*") == [
        "deit_base_distilled_patch16_224",
        "deit_base_distilled_patch16_384",
        "deit_small_distilled_patch16_224",
        "deit_tiny_distilled_patch16_224",
    ]
    model = vitkit.create_model("vit_tiny_patch4_32", num_classes=3, depth=2)
    assert model.cfg.num_classes == 3 and len(model.blocks) == 2
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_named_sizes_follow_the_variant_table():
    cfg = vitkit.get_config("vit_large_patch16_384")
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_dim) == (1024, 24, 16, 4096)
    assert cfg.img_size == (384, 384) and cfg.grid_size == (24, 24)
    assert vitkit.get_config("deit_small_patch16_224").mean == (0.485, 0.456, 0.406)


def test_unknown_names_and_fields_raise():
    with pytest.raises(ValueError, match="unknown model 'vit_gigantic"):
        vitkit.create_model("vit_gigantic_patch16_224")
    with pytest.raises(TypeError, match="unknown ViTConfig field"):
        vitkit.create_model("vit_base_patch16_224", num_clases=10)
    with pytest.raises(ValueError, match="cannot parse variant"):
        vitkit.ViTConfig.from_variant("X/16")


def test_config_round_trips_through_dict():
    cfg = vitkit.get_config("deit_base_distilled_patch16_384")
    assert vitkit.ViTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ViTConfig key"):
        vitkit.ViTConfig.from_dict({**cfg.to_dict(), "bogus": 1})
