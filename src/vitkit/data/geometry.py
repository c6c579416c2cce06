"""Crops, flips and resizes of whole batches (B, C, H, W) in one vectorised call each.

The in-memory path stores each image once and draws a new crop every epoch here, on the device, instead of in
per-sample Python: the zero-padded random crop is one gather, RandomResizedCrop two batched matmuls.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, low: float = 0.0, high: float = 1.0
) -> torch.Tensor:
    """U(low, high) on the CPU from ``generator`` (or the global RNG): small parameter tensors only."""
    return torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low) + low


def pad_crop_flip(x: torch.Tensor, shift: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Per-sample zero-padded crop and optional horizontal flip, any dtype.

    out[b, :, y, x] = x[b, :, y + dy_b, x' + dx_b] (zero outside), x' = W - 1 - x where ``flip[b]``.
    ``shift`` (B, 2) holds (dy, dx); ``flip`` (B,) bools. One gather over the flattened padded images.
    """
    B, C, H, W = x.shape
    p = int(shift.abs().max()) if shift.numel() else 0
    Wp = W + 2 * p
    padded = (F.pad(x, (p, p, p, p)) if p else x).reshape(B, C, (H + 2 * p) * Wp)  # (B, C, Hp * Wp)
    shift = shift.to(x.device)
    rows = (shift[:, 0:1] + p) + torch.arange(H, device=x.device)  # (B, H)
    cols = torch.arange(W, device=x.device).expand(B, W)
    cols = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols) + (shift[:, 1:2] + p)  # (B, W)
    index = (rows[:, :, None] * Wp + cols[:, None, :]).view(B, 1, H * W).expand(B, C, H * W)
    return padded.gather(2, index).view(B, C, H, W)


def sample_rrc_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` RandomResizedCrop boxes (left, top, w, h) in pixels: the per-sample rule, ten tries each at once."""
    tries = 10
    area = height * width * uniform((n, tries), generator, *scale)
    aspect = torch.exp(uniform((n, tries), generator, math.log(ratio[0]), math.log(ratio[1])))
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.int8).argmax(1, keepdim=True)  # index of the first acceptable try
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    # No try fitted: the largest centred crop within the aspect range (torchvision's fallback).
    aspect_in = width / height
    fw, fh = float(width), float(height)
    if aspect_in < ratio[0]:
        fh = float(round(width / ratio[0]))
    elif aspect_in > ratio[1]:
        fw = float(round(height * ratio[1]))
    found = ok.any(1)
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    u = uniform((n, 2), generator)
    left = torch.where(found, torch.floor(u[:, 0] * (width - w + 1)), torch.floor((width - w) / 2))
    top = torch.where(found, torch.floor(u[:, 1] * (height - h + 1)), torch.floor((height - h) / 2))
    return torch.stack([left, top, w, h], 1).float()


def _kernel(d: torch.Tensor, mode: str) -> torch.Tensor:
    """Interpolation weights at distance ``d`` (in source pixels, stretched when shrinking): Pillow's filters."""
    a = d.abs()
    if mode == "nearest":
        return ((d >= -0.5) & (d < 0.5)).to(d.dtype)
    if mode == "bilinear":
        return (1 - a).clamp(min=0)
    # Keys' cubic with a = -0.5, Pillow's BICUBIC.
    return torch.where(a < 1, (1.5 * a - 2.5) * a * a + 1, torch.where(a < 2, ((-0.5 * a + 2.5) * a - 4) * a + 2, 0))


def resample_matrix(
    start: torch.Tensor, length: torch.Tensor, out: int, size: int, mode: str, zeros: bool
) -> torch.Tensor:
    """Per-sample weights (B, out, size) that crop [start, start + length) of an axis and resample it to ``out``.

    Output pixel u samples source position start + (u + 0.5) * scale (pixel centres at +0.5) with the kernel
    stretched by the scale when shrinking (antialiasing), and weights outside the axis dropped and the rest
    renormalised: Pillow's resize with a box. With ``zeros=True`` output pixels whose centre falls outside the
    axis are zero, as when a resized image is zero-padded and cropped.
    """
    start, length = start.double(), length.double()
    scale = (length / out)[:, None, None]  # (B, 1, 1) source pixels per output pixel
    stretch = scale.clamp(min=1.0) if mode != "nearest" else torch.ones_like(scale)
    u = torch.arange(out, dtype=torch.float64, device=start.device)[None, :, None]
    centre = start[:, None, None] + (u + 0.5) * scale  # (B, out, 1)
    j = torch.arange(size, dtype=torch.float64, device=start.device)
    w = _kernel((j + 0.5 - centre) / stretch, mode)  # (B, out, size)
    w = w / w.sum(-1, keepdim=True).clamp(min=1e-12)
    if zeros:
        w = w * ((centre >= 0) & (centre < size))
    return w.float()


def resized_crop(
    x: torch.Tensor,
    boxes: torch.Tensor,
    size: tuple[int, int],
    flip: torch.Tensor | None = None,
    mode: str = "bilinear",
    zeros: bool = False,
) -> torch.Tensor:
    """Crop box (left, top, w, h) of every image and resize it to ``size``: two batched matmuls.

    (B, C, H, W) pixels in [0, 255] -> float (B, C, h, w). The resampling is separable, so each axis is one
    weight matrix per image (:func:`resample_matrix`); a flip reverses the column weights. Boxes may reach
    outside the image; ``zeros=True`` then gives zeros there, as a padded crop does.
    """
    B, C, H, W = x.shape
    boxes = boxes.to(device=x.device, dtype=torch.float64)
    left, top, bw, bh = boxes.unbind(1)
    rows = resample_matrix(top, bh, size[0], H, mode, zeros)  # (B, h, H)
    cols = resample_matrix(left, bw, size[1], W, mode, zeros)  # (B, w, W)
    if flip is not None:
        cols = torch.where(flip.to(x.device)[:, None, None], cols.flip(1), cols)
    xf = x if x.is_floating_point() else x.float()
    out = rows.unsqueeze(1) @ xf @ cols.transpose(1, 2).unsqueeze(1)  # (B, C, h, w)
    return out.clamp(0, 255) if mode == "bicubic" else out  # cubic weights overshoot
