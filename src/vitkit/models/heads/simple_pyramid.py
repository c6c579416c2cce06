"""ViTDet's simple feature pyramid (Li et al. 2022, "Exploring Plain Vision Transformer Backbones for Object
Detection", Sec. 3): a plain ViT gives one stride-16 map; the pyramid is built from it alone, without the
backbone's intermediate blocks, so that UperNet or Semantic FPN can sit on a plain ViT.

    stride 4   ConvTranspose 2x2/2 (D -> D/2) -> LayerNorm2d -> GELU -> ConvTranspose 2x2/2 (D/2 -> D/4)
    stride 8   ConvTranspose 2x2/2 (D -> D/2)
    stride 16  identity
    stride 32  MaxPool 2x2/2
    then, on every level: 1x1 conv -> LayerNorm2d, 3x3 conv -> LayerNorm2d, to a common width (256 in ViTDet)

Norms are LayerNorm over channels (ViTDet's ``norm="LN"``, detectron2's ``LayerNorm`` with eps 1e-6), and the
convolutions that a norm follows have no bias, as in ViTDet. Module names are detectron2's (``simfp_{log2
stride}``, the norm inside its conv as ``.norm``), so the ``backbone.simfp_*`` weights of a ViTDet checkpoint load
after removing the ``backbone.`` prefix. Weights start at PyTorch's defaults, as in detectron2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (detectron2's ``LayerNorm``; eps 1e-6 as there)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        x = x.permute(0, 2, 3, 1)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class ConvNorm(nn.Conv2d):
    """A bias-free convolution whose LayerNorm2d lives inside it as ``.norm`` (detectron2's ``Conv2d(norm=...)``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = LayerNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        return self.norm(super().forward(x))


SCALES = (4.0, 2.0, 1.0, 0.5)  # the resamplings ViTDet defines (its scale_factors)


class SimplePyramid(nn.Module):
    """One (B, D, H/16, W/16) map -> maps at strides 16 / s for each scale s, all ``out_channels`` wide.

    Args:
        in_channels: D, the ViT's width.
        out_channels: the pyramid's common width (256 in ViTDet).
        scale_factors: resampling per level, from ``(4.0, 2.0, 1.0, 0.5)``; the default gives strides 4, 8, 16, 32.
        in_stride: stride of the input map (the ViT's patch size).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        scale_factors: Sequence[float] = SCALES,
        in_stride: int = 16,
    ) -> None:
        super().__init__()
        scales = tuple(float(s) for s in scale_factors)
        if not scales or any(s not in SCALES for s in scales) or list(scales) != sorted(set(scales), reverse=True):
            raise ValueError(f"scale_factors {scale_factors}: use distinct values from {SCALES}, largest first")
        if in_channels % 4:
            raise ValueError(f"in_channels={in_channels}: the stride-4 level needs a width divisible by 4")
        self.in_channels = in_channels
        self.strides = tuple(int(in_stride / s) for s in scales)
        self.out_channels = (out_channels,) * len(scales)
        self.names = [f"simfp_{int(math.log2(s))}" for s in self.strides]
        for name, scale in zip(self.names, scales):
            self.add_module(name, self._stage(in_channels, out_channels, scale))

    @staticmethod
    def _stage(dim: int, width: int, scale: float) -> nn.Sequential:
        if scale == 4.0:
            layers = [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
                      nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2)]  # fmt: skip
            dim //= 4
        elif scale == 2.0:
            layers, dim = [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)], dim // 2
        elif scale == 1.0:
            layers = []
        else:
            layers = [nn.MaxPool2d(2, stride=2)]
        return nn.Sequential(*layers, ConvNorm(dim, width, 1), ConvNorm(width, width, 3))

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """(B, D, h, w), or a list whose last map is it (ViTDet reads the last block only) ->
        [(B, out_channels, h * s, w * s)] for each scale s (max-pooling floors odd sizes)."""
        if not isinstance(x, torch.Tensor):
            x = x[-1]
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SimplePyramid expects a (B, {self.in_channels}, H, W) map but got {tuple(x.shape)}; build it with "
                "in_channels set to the ViT's width"
            )
        return [getattr(self, name)(x) for name in self.names]
