"""``create_model(name, features_only=True)``: any vitkit backbone as a function from images to NCHW feature maps.

Every family's model offers ``forward_intermediates(x, indices, intermediates_only=True)`` returning NCHW maps
and ``feature_info`` (channels and stride of each), so one wrapper serves them all: a ViT's blocks (patch tokens
as maps, all at the patch stride), the stages of Swin and ResNetV2, the levels of ViT-Adapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def chosen_indices(indices: int | Sequence[int] | None, count: int) -> list[int]:
    """The feature maps ``forward_intermediates`` returns, in forward order: all for None, the last n for an int n,
    else those listed (negative ones from the end)."""
    if indices is None:
        return list(range(count))
    if isinstance(indices, int):
        return list(range(count - indices, count))
    return sorted({i % count for i in indices})


class FeatureExtractor(nn.Module):
    """``forward(x) -> [maps]`` of the chosen ``out_indices`` (default: the last four feature maps, the usual
    pyramid of strides 4-32 for Swin and ResNetV2 and the last four blocks of a ViT)."""

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        infos = list(model.feature_info)
        count = len(infos)
        indices = list(range(max(count - 4, 0), count)) if out_indices is None else list(out_indices)
        bad = [i for i in indices if not -count <= i < count]
        if bad:
            raise ValueError(f"out_indices {bad} out of range: this model has {count} feature maps (0..{count - 1})")
        self.model = model
        self.cfg = model.cfg
        self.out_indices = tuple(i % count for i in indices)
        self.feature_info = [infos[i] for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) -> [(B, C_i, H / r_i, W / r_i)] in ``out_indices`` order."""
        maps = self.model.forward_intermediates(x, list(self.out_indices), stop_early=True, intermediates_only=True)
        order = sorted(self.out_indices)  # the model returns maps in forward order
        return [maps[order.index(i)] for i in self.out_indices]

    def channels(self) -> list[int]:
        return [info["num_chs"] for info in self.feature_info]

    def reductions(self) -> list[int]:
        return [info["reduction"] for info in self.feature_info]
