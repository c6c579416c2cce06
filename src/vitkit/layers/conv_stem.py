"""Convolutional stem (Xiao et al. 2021, "Early Convolutions Help Transformers See Better").

A few 3x3 convolutions with BatchNorm and ReLU, then a 1x1 projection to the width, in place of the single
PxP patchify convolution. Like the paper's hybrid (Sec. 3.1) it feeds a CNN feature map to the Transformer as
1x1 patches, but costs only a few percent more compute; on small data it trains markedly faster (see
recipes/cifar10_vit.yaml and docs/benchmarks.md).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvStem(nn.Module):
    def __init__(self, channels: tuple[int, ...], strides: tuple[int, ...], in_chans: int, embed_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_chans
        for c_out, stride in zip(channels, strides):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, embed_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, D, H/s, W/s) with s the product of the strides."""
        return self.proj(self.convs(x))
