"""The hybrid's convolutional stem (ViT paper Sec. 3.1): a BiT ResNet whose feature map is cut into "patches".

The ResNet itself lives in :mod:`vitkit.models.resnetv2`, shared with the BiT classifiers; here it runs in the
numerics of the code that trained the released hybrids (google-research/vision_transformer, ``models_resnet.py``):
'SAME' padding, ``(w - mean) / (std + 1e-5)`` standardisation, GroupNorm eps 1e-6, post-activation units.

Module names follow timm's hybrid (``patch_embed.backbone.stem.conv``, ``...stages.{i}.blocks.{j}.conv1``); a
root-only backbone (R+Ti/16: no stages) is the stem itself (``patch_embed.backbone.conv``), as in timm.
"""

from __future__ import annotations

import torch
from torch import nn

from vitkit.config import ViTConfig
from vitkit.models.resnetv2 import JAX_NUMERICS, ResNetV2Backbone, StdConv2d, Stem, pad_same

__all__ = ["HybridEmbed", "StdConv2dSame", "pad_same"]


class StdConv2dSame(StdConv2d):
    """vit_jax's ``StdConv``: standardised, bias-free, 'SAME'-padded."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_chans, out_chans, kernel_size, stride, JAX_NUMERICS)


class HybridEmbed(nn.Module):
    """ResNet feature map, then a PxP projection to the width: (B, C, H, W) -> (B, D, gh, gw), like PatchEmbed."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        layers = cfg.backbone_layers
        if layers is None:
            raise ValueError("HybridEmbed needs cfg.backbone_layers, e.g. (3, 4, 9), or () for a root-only ResNet")
        width = cfg.backbone_width
        if layers:
            self.backbone: nn.Module = ResNetV2Backbone(cfg.in_chans, layers, width, JAX_NUMERICS)
            channels = self.backbone.num_features
        else:  # vit_jax with resnet.num_layers=(): conv_root, gn_root and the max-pool only
            self.backbone, channels = Stem(cfg.in_chans, width, "same", JAX_NUMERICS), width
        self.patch_size = P = cfg.patch_size
        self.proj = nn.Conv2d(channels, cfg.embed_dim, kernel_size=P, stride=P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(x))
