"""Checks on an image batch that every model family makes before embedding it, each failing with the fix."""

from __future__ import annotations

import torch


def check_image_batch(x: torch.Tensor, in_chans: int) -> None:
    """``x`` must be (B, C, H, W) with ``in_chans`` channels; a one-line ValueError names the fix otherwise."""
    if x.ndim != 4:
        hint = " add a batch dimension with x.unsqueeze(0)" if x.ndim == 3 else " pass images as (B, C, H, W)"
        raise ValueError(f"expected a 4D tensor (B, C, H, W), got shape {tuple(x.shape)};{hint}")
    if x.shape[1] != in_chans:
        raise ValueError(
            f"expected {in_chans} input channels, got {x.shape[1]} (shape {tuple(x.shape)}); "
            f"convert the images or build the model with in_chans={x.shape[1]}"
        )
