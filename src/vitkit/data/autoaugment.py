"""RandAugment (Cubuk et al. 2020) and TrivialAugment (Mueller & Hutter 2021) on whole batches.

Every image draws its own ops and magnitudes; the batch is then processed one op at a time on the subset of
images that drew it, so the cost is a few vectorised calls per layer, not one Python call per image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vitkit.data import ops
from vitkit.data.geometry import uniform

OPS = (
    "identity",
    "autocontrast",
    "equalize",
    "rotate",
    "solarize",
    "color",
    "posterize",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)


@dataclass(frozen=True)
class OpRanges:
    """The strongest setting of each op; a level in [0, 1] picks a fraction of it."""

    rotate: float  # degrees
    shear: float  # x shift per row
    translate: float  # fraction of the image size, or pixels when translate_pixels
    translate_pixels: bool
    enhance: float  # factor 1 +- enhance for color, contrast, brightness, sharpness
    posterize_drop: float  # bits removed at level 1


# RandAugment as in torchvision (magnitude m of 10 -> level m / 10): 30 deg, shear 0.3, 150/331 of the size.
RAND_RANGES = OpRanges(
    rotate=30.0, shear=0.3, translate=150 / 331, translate_pixels=False, enhance=0.9, posterize_drop=4
)
# TrivialAugment "wide" ranges.
WIDE_RANGES = OpRanges(rotate=135.0, shear=0.99, translate=32.0, translate_pixels=True, enhance=0.99, posterize_drop=6)


def _signed(level: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    sign = torch.where(uniform(level.shape, generator) < 0.5, -1.0, 1.0).to(level.dtype)
    return level * sign


def apply_op(
    x: torch.Tensor, name: str, level: torch.Tensor, ranges: OpRanges, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply op ``name`` at per-sample ``level`` (B,) in [0, 1] to a (B, 3, H, W) batch in [0, 255]."""
    H, W = x.shape[-2:]
    level = level.to(torch.float64)
    enhance: dict[str, Callable] = {
        "color": ops.color,
        "contrast": ops.contrast,
        "brightness": ops.brightness,
        "sharpness": ops.sharpness,
    }
    if name == "identity":
        return x
    if name == "autocontrast":
        return ops.autocontrast(x)
    if name == "equalize":
        return ops.equalize(x)
    if name == "solarize":
        return ops.solarize(x, 256.0 * (1.0 - level))
    if name == "posterize":
        return ops.posterize(x, 8 - torch.floor(level * ranges.posterize_drop))
    if name in enhance:
        return enhance[name](x, 1.0 + _signed(level * ranges.enhance, generator))
    if name == "rotate":
        return ops.rotate(x, _signed(level * ranges.rotate, generator))
    if name in ("shear_x", "shear_y"):
        fn = ops.shear_x if name == "shear_x" else ops.shear_y
        return fn(x, _signed(level * ranges.shear, generator))
    if name in ("translate_x", "translate_y"):
        size = W if name == "translate_x" else H
        pixels = _signed(level * (ranges.translate if ranges.translate_pixels else ranges.translate * size), generator)
        zero = torch.zeros_like(pixels)
        return ops.translate(x, pixels, zero) if name == "translate_x" else ops.translate(x, zero, pixels)
    raise ValueError(f"unknown augmentation op {name!r}; known: {OPS}")


def _apply_choices(
    x: torch.Tensor, choice: torch.Tensor, level: torch.Tensor, ranges: OpRanges, generator: torch.Generator | None
) -> torch.Tensor:
    """Image b gets op OPS[choice[b]] at level[b]; ops run on the subsets that drew them."""
    out = x.clone()
    for k, name in enumerate(OPS):
        if name == "identity":
            continue
        idx = (choice == k).nonzero().flatten()
        if idx.numel():
            dev_idx = idx.to(x.device)
            out[dev_idx] = apply_op(x[dev_idx], name, level[idx], ranges, generator)
    return out


def rand_augment(
    x: torch.Tensor,
    num_ops: int,
    magnitude: float,
    magnitude_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``num_ops`` uniformly chosen ops per image at magnitude ``magnitude`` of 10 (+ N(0, std) noise)."""
    B = x.shape[0]
    for _ in range(num_ops):
        choice = torch.randint(len(OPS), (B,), generator=generator)
        level = torch.full((B,), magnitude, dtype=torch.float64)
        if magnitude_std > 0:
            level = level + magnitude_std * torch.randn(B, generator=generator, dtype=torch.float64)
        x = _apply_choices(x, choice, (level / 10).clamp(0, 1), RAND_RANGES, generator)
    return x


def trivial_augment(x: torch.Tensor, generator: torch.Generator | None = None, bins: int = 31) -> torch.Tensor:
    """One uniformly chosen op per image at a uniformly chosen level of ``bins`` (TrivialAugmentWide)."""
    B = x.shape[0]
    choice = torch.randint(len(OPS), (B,), generator=generator)
    level = torch.randint(bins, (B,), generator=generator).to(torch.float64) / (bins - 1)
    return _apply_choices(x, choice, level, WIDE_RANGES, generator)
