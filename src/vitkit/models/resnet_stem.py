"""The hybrid's convolutional stem (paper Sec. 3.1): a BiT ResNet whose feature map is cut into 1x1 "patches".

The numerics follow the code that trained the released R50+ViT weights (google-research/vision_transformer,
``models_resnet.py``), so converted checkpoints reproduce its logits:

- weight-standardised convolutions, ``w = (w - mean) / (std + 1e-5)`` over each output channel's kernel;
- GroupNorm with 32 groups and Flax's epsilon 1e-6;
- TensorFlow 'SAME' padding (the extra row/column goes after, not before), including the max-pool, which pads
  with -inf;
- bottleneck units with the stride on the 3x3 convolution and the projection shortcut wherever the shape
  changes; the stem reduces by 4, every stage after the first by 2.

Module names follow timm's ``ResNetV2`` (``stem.conv``, ``stages.{i}.blocks.{j}.conv1`` ...) so that timm
state dicts of ``vit_base_r50_s16_384`` load without renaming.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.config import ViTConfig

GN_GROUPS = 32
GN_EPS = 1e-6  # Flax nn.GroupNorm default
WS_EPS = 1e-5  # vit_jax weight_standardize


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, H, W) as TensorFlow's 'SAME' does: output size ceil(H / stride), odd padding goes last."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last axis first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class StdConv2dSame(nn.Conv2d):
    """Bias-free convolution with weight standardisation and 'SAME' padding (BiT, Kolesnikov et al. 2020)."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_chans, out_chans, kernel_size, stride=stride, padding=0, bias=False)

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        std = w.std(dim=(1, 2, 3), keepdim=True, unbiased=False)  # population std, as jnp.std
        return (w - mean) / (std + WS_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.standardized_weight(), None, self.stride)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GN_GROUPS, channels, eps=GN_EPS)


class Downsample(nn.Module):
    """Projection shortcut: 1x1 standardised conv (with the unit's stride) and GroupNorm."""

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__()
        self.conv = StdConv2dSame(in_chans, out_chans, 1, stride)
        self.norm = _group_norm(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 with GroupNorm after each conv; ReLU after the residual sum."""

    def __init__(self, in_chans: int, mid_chans: int, stride: int) -> None:
        super().__init__()
        out_chans = 4 * mid_chans
        needs_projection = in_chans != out_chans or stride != 1
        self.downsample = Downsample(in_chans, out_chans, stride) if needs_projection else None
        self.conv1 = StdConv2dSame(in_chans, mid_chans, 1)
        self.norm1 = _group_norm(mid_chans)
        self.conv2 = StdConv2dSame(mid_chans, mid_chans, 3, stride)
        self.norm2 = _group_norm(mid_chans)
        self.conv3 = StdConv2dSame(mid_chans, out_chans, 1)
        self.norm3 = _group_norm(out_chans)
        nn.init.zeros_(self.norm3.weight)  # each unit starts as the identity (as gn3 in the JAX code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        return F.relu(y + shortcut)


class ResNetStage(nn.Module):
    def __init__(self, in_chans: int, mid_chans: int, depth: int, stride: int) -> None:
        super().__init__()
        units = [Bottleneck(in_chans, mid_chans, stride)]
        units += [Bottleneck(4 * mid_chans, mid_chans, 1) for _ in range(depth - 1)]
        self.blocks = nn.Sequential(*units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Stem(nn.Module):
    """7x7/2 standardised conv, GroupNorm, ReLU, 3x3/2 max-pool: (B, C, H, W) -> (B, width, H/4, W/4)."""

    def __init__(self, in_chans: int, width: int) -> None:
        super().__init__()
        self.conv = StdConv2dSame(in_chans, width, 7, 2)
        self.norm = _group_norm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(x)))
        return F.max_pool2d(pad_same(x, 3, 2, value=float("-inf")), 3, 2)


class ResNetV2Backbone(nn.Module):
    """The BiT ResNet without its head: (B, C, H, W) -> (B, 4 * width * 2^(S-1), H/s, W/s), s = 4 * 2^(S-1)."""

    def __init__(self, in_chans: int, layers: tuple[int, ...], width: int = 64) -> None:
        super().__init__()
        if not layers:
            raise ValueError("backbone_layers must name at least one stage, e.g. (3, 4, 9) for R50+ViT-B/16")
        self.stem = Stem(in_chans, width)
        stages, chans = [], width
        for i, depth in enumerate(layers):
            mid = width * 2**i
            stages.append(ResNetStage(chans, mid, depth, stride=1 if i == 0 else 2))
            chans = 4 * mid
        self.stages = nn.Sequential(*stages)
        self.num_features = chans
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class HybridEmbed(nn.Module):
    """ResNet feature map, then a PxP projection to the width: (B, C, H, W) -> (B, D, gh, gw), like PatchEmbed."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        if cfg.backbone_layers is None:
            raise ValueError("HybridEmbed needs cfg.backbone_layers, e.g. (3, 4, 9)")
        self.backbone = ResNetV2Backbone(cfg.in_chans, cfg.backbone_layers, cfg.backbone_width)
        self.patch_size = P = cfg.patch_size
        self.proj = nn.Conv2d(self.backbone.num_features, cfg.embed_dim, kernel_size=P, stride=P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(x))
