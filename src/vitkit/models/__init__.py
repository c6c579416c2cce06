"""Model families built from :class:`vitkit.config.ViTConfig`."""

from vitkit.models.vit import VisionTransformer

__all__ = ["VisionTransformer"]
