"""Stochastic depth (Huang et al. 2016), as used by DeiT and later ViT recipes."""

from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Drop a residual branch for a whole sample with probability ``p`` while training; rescale the rest."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path_rates(rate: float, count: int) -> list[float]:
    """Stochastic depth growing linearly over ``count`` blocks, from 0 to ``rate`` (DeiT, Swin, BiT)."""
    return [rate * i / max(count - 1, 1) for i in range(count)]
