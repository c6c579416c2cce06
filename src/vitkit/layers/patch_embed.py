"""Patch embedding (paper Eq. 1): cut the image into PxP patches and map each linearly to D dimensions.

A convolution with kernel = stride = P computes exactly flatten(patch) @ E for E of shape (P^2 C, D), in one
fused kernel.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: tuple[int, int], in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, D, H/P, W/P); the model flattens the grid into tokens."""
        return self.proj(x)
