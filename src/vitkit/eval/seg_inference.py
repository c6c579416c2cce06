"""Segmentation inference at any image size, whole or by sliding windows, and label maps drawn or saved as PNG.

``model`` is any callable ``x (B, 3, h, w) -> logits (B, K, h', w')``; logits at a lower resolution (UperNet's 1/4)
are resized to their input bilinearly (align_corners=False), as mmseg's ``encode_decode`` does.

Sliding windows follow mmseg's ``slide_inference``: windows of ``crop`` every ``stride``, the last one moved back
to end at the border, logits summed and divided by how many windows cover each pixel. An image smaller than the
crop is padded (zeros, bottom and right) to the crop and the padding cut from the logits, as the BEiT and
ViT-Adapter variants of that function do, so models with a fixed input size work too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vitkit.data.seg_transforms import Scale, rescale_size, round_up
from vitkit.utils.files import atomic_path

SegModel = Callable[[torch.Tensor], torch.Tensor]
Window = tuple[int, int, int, int]  # y1, y2, x1, x2


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def slide_windows(height: int, width: int, crop: int | tuple[int, int], stride: int | tuple[int, int]) -> list[Window]:
    """The (y1, y2, x1, x2) windows that cover an image, row by row; each is ``crop`` (H, W) unless the image is
    smaller. Grid counts and the last window's shift to the border as mmseg's ``slide_inference``."""
    (ch, cw), (sh, sw) = _pair(crop), _pair(stride)
    if sh > ch or sw > cw or min(sh, sw, ch, cw) < 1:
        raise ValueError(f"stride {(sh, sw)} must be positive and at most the crop {(ch, cw)}, or windows leave gaps")
    rows = max(height - ch + sh - 1, 0) // sh + 1
    cols = max(width - cw + sw - 1, 0) // sw + 1
    out = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * sh + ch, height), min(c * sw + cw, width)
            out.append((max(y2 - ch, 0), y2, max(x2 - cw, 0), x2))
    return out


def window_counts(height: int, width: int, crop: int | tuple[int, int], stride: int | tuple[int, int]) -> torch.Tensor:
    """How many windows cover each pixel: (H, W) int64, the divisor of the summed logits."""
    count = torch.zeros(height, width, dtype=torch.int64)
    for y1, y2, x1, x2 in slide_windows(height, width, crop, stride):
        count[y1:y2, x1:x2] += 1
    return count


def _logits(model: SegModel, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) -> float32 logits (B, K, h, w), resized from the model's own resolution when it differs."""
    out = model(x).float()
    if out.shape[-2:] != x.shape[-2:]:
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return out


def whole_inference(model: SegModel, x: torch.Tensor) -> torch.Tensor:
    """The whole image at once: (B, 3, H, W) -> logits (B, K, H, W)."""
    return _logits(model, x)


@torch.no_grad()
def slide_inference(
    model: SegModel,
    x: torch.Tensor,
    crop: int | tuple[int, int],
    stride: int | tuple[int, int],
    window_batch: int = 4,
) -> torch.Tensor:
    """Overlapping windows, their logits averaged: (B, 3, H, W) -> logits (B, K, H, W).

    ``window_batch`` windows of every image go through the model together (the result does not depend on it)."""
    ch, cw = _pair(crop)
    B, _, H, W = x.shape
    if H < ch or W < cw:  # pad to the crop, then cut the padding from the logits
        padded = F.pad(x, (0, max(cw - W, 0), 0, max(ch - H, 0)))
        return slide_inference(model, padded, crop, stride, window_batch)[..., :H, :W]
    windows = slide_windows(H, W, crop, stride)
    total: torch.Tensor | None = None
    for start in range(0, len(windows), window_batch):
        chunk = windows[start : start + window_batch]
        crops = torch.cat([x[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])  # (len(chunk) * B, 3, ch, cw)
        logits = _logits(model, crops)
        if total is None:
            total = logits.new_zeros(B, logits.shape[1], H, W)
        for n, (y1, y2, x1, x2) in enumerate(chunk):
            total[:, :, y1:y2, x1:x2] += logits[n * B : (n + 1) * B]
    count = window_counts(H, W, crop, stride).to(total.device)  # type: ignore[union-attr]
    return total / count  # type: ignore[operator]


@torch.no_grad()
def segment(
    model: SegModel,
    x: torch.Tensor,
    mode: str = "whole",
    crop: int | tuple[int, int] = 512,
    stride: int | tuple[int, int] = 341,
    scale: Scale | None = None,
    size_divisor: int = 1,
    out_size: tuple[int, int] | None = None,
    window_batch: int = 4,
) -> torch.Tensor:
    """Label map (B, H_out, W_out) int64 for normalised images ``x`` (B, 3, H, W).

    ``scale`` resizes the input first (mmseg's test ``img_scale``: a (long, short) bound or a short side; with
    ``size_divisor`` rounding up, as ViT-Adapter's ResizeToMultiple); leave it None for images the evaluation
    dataset already resized. Logits are resized to ``out_size`` (default: the input's size) bilinearly with
    align_corners=False, then the argmax is taken. From a SegDataConfig: mode=eval_mode, crop=eval_crop,
    stride=eval_stride, scale=eval_scale, size_divisor=eval_size_divisor."""
    H, W = x.shape[-2:]
    out_size = tuple(out_size) if out_size is not None else (H, W)  # type: ignore[assignment]
    if scale is not None or size_divisor > 1:
        w, h = rescale_size(W, H, scale) if scale is not None else (W, H)
        size = round_up((w, h), size_divisor)
        if size != (W, H):
            x = F.interpolate(x, size=(size[1], size[0]), mode="bilinear", align_corners=False, antialias=True)
    if mode == "slide":
        logits = slide_inference(model, x, crop, stride, window_batch)
    elif mode == "whole":
        logits = whole_inference(model, x)
    else:
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    if tuple(logits.shape[-2:]) != out_size:
        logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    return logits.argmax(dim=1)


# ----------------------------------------------------------------------------------------- drawing, saving
def colorize(labels: np.ndarray | torch.Tensor, palette: list[tuple[int, int, int]]) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours; ids without a palette entry (ignored pixels) are black."""
    ids = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
    table = np.zeros((max(len(palette), int(ids.max(initial=0)) + 1), 3), np.uint8)
    table[: len(palette)] = np.asarray(palette, np.uint8).reshape(-1, 3)
    return table[np.clip(ids, 0, None)]


def overlay(
    image: Image.Image | np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    palette: list[tuple[int, int, int]],
    alpha: float = 0.5,
    ignore_index: int = 255,
) -> Image.Image:
    """The image with each pixel's class colour blended in at ``alpha``; ignored pixels keep the image.

    ``image``: a PIL image, (H, W, 3) uint8, or a (3, H, W) uint8 tensor, at the label map's size."""
    if isinstance(image, torch.Tensor):
        image = image.permute(1, 2, 0).cpu().numpy()
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    ids = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if pixels.shape[:2] != ids.shape:
        raise ValueError(f"image {pixels.shape[1]}x{pixels.shape[0]} and labels {ids.shape[1]}x{ids.shape[0]} differ")
    shown = ((ids >= 0) & (ids < len(palette)) & (ids != ignore_index))[..., None]
    blended = np.where(shown, (1 - alpha) * pixels + alpha * colorize(ids, palette), pixels)
    return Image.fromarray(np.round(blended).astype(np.uint8), "RGB")


def save_label_png(
    labels: np.ndarray | torch.Tensor, path: str | os.PathLike, palette: list[tuple[int, int, int]] | None = None
) -> Path:
    """Class ids as an 8-bit palette PNG (what VOC's SegmentationClass holds): viewers show the colours, readers
    get the ids back with ``np.asarray(Image.open(path))``. Written atomically."""
    ids = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if ids.ndim != 2 or (ids.size and (ids.min() < 0 or ids.max() > 255)):
        raise ValueError(
            f"a label PNG holds one 2-D map of ids 0..255, got shape {ids.shape} and range "
            f"{ids.min(initial=0)}..{ids.max(initial=0)}; save more classes as 16-bit PNG or .npy instead"
        )
    img = Image.fromarray(ids.astype(np.uint8), "P")
    flat = [v for colour in (palette or [])[:256] for v in colour]
    img.putpalette(flat + [0] * (768 - len(flat)))
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
