"""Small builders shared by the tests."""

from __future__ import annotations

from vitkit import ViTConfig

TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, mlp_dim=128, num_classes=5)


def tiny_config(**changes) -> ViTConfig:
    """A ViT small enough for exhaustive checks: 4x4 grid, width 32, two blocks."""
    return ViTConfig(**{**TINY, **changes})
