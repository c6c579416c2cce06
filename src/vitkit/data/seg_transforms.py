"""Joint image + label-map transforms for semantic segmentation, as mmsegmentation's ADE20K training pipeline.

Training: random rescale (``ratio_range`` times the base ``scale``, aspect kept) -> random crop that no single
class dominates (``cat_max_ratio``) -> horizontal flip -> photometric distortion -> padding to the crop size.
Evaluation: resize the image only (the label map stays at its stored size, where metrics are computed).

The image is resampled bilinearly and the label map always with NEAREST, through Pillow for both so that the two
share one pixel-centre convention (Pillow's bilinear also antialiases when shrinking, which OpenCV, used by mmseg,
does not). Each call takes a ``random.Random`` seeded per sample, so outputs depend only on the loader's seed.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from PIL import Image

from vitkit.data.seg_config import SegDataConfig

Scale = int | tuple[int, int]
_CROP_TRIES = 10  # mmseg's RandomCrop redraws up to ten times


def rescale_size(width: int, height: int, scale: Scale) -> tuple[int, int]:
    """(width, height) after mmcv's ``imrescale``: the largest size whose long side fits ``max(scale)`` and short
    side fits ``min(scale)``, aspect kept, rounded half up. A single int sets the short side."""
    if isinstance(scale, int):
        factor = scale / min(width, height)
    else:
        factor = min(max(scale) / max(width, height), min(scale) / min(width, height))
    return max(1, int(width * factor + 0.5)), max(1, int(height * factor + 0.5))


def round_up(size: tuple[int, int], divisor: int) -> tuple[int, int]:
    """Each side rounded up to a multiple of ``divisor`` (mmseg's ResizeToMultiple)."""
    return tuple(int(math.ceil(s / divisor)) * divisor for s in size)  # type: ignore[return-value]


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an integer label map to (width, height): only ids present stay present."""
    if (mask.shape[1], mask.shape[0]) == size:
        return mask
    out = Image.fromarray(mask.astype(np.int32), "I").resize(size, Image.NEAREST)
    return np.asarray(out).astype(mask.dtype)


def _draw_offset(shape: tuple[int, int], crop: tuple[int, int], rng: random.Random) -> tuple[int, int]:
    return rng.randint(0, max(shape[0] - crop[0], 0)), rng.randint(0, max(shape[1] - crop[1], 0))


def _balanced(window: np.ndarray, cat_max_ratio: float, ignore_index: int) -> bool:
    """mmseg's test: more than one class, and none covering ``cat_max_ratio`` or more of the labelled pixels."""
    counts = np.bincount(window[window != ignore_index].ravel())
    counts = counts[counts > 0]
    return len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio


def crop_offset(
    mask: np.ndarray, crop: tuple[int, int], cat_max_ratio: float, ignore_index: int, rng: random.Random
) -> tuple[int, int]:
    """(top, left) of a random ``crop`` (H, W) of ``mask``; with ``cat_max_ratio`` < 1 it is redrawn up to ten
    times while one class covers too much of it (ignored pixels do not count), then the last draw is kept."""
    top, left = _draw_offset(mask.shape, crop, rng)
    if cat_max_ratio < 1:
        for _ in range(_CROP_TRIES):
            if _balanced(mask[top : top + crop[0], left : left + crop[1]], cat_max_ratio, ignore_index):
                break
            top, left = _draw_offset(mask.shape, crop, rng)
    return top, left


def _convert(channel: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    # mmseg's convert: scale and shift in float32, clip, truncate to uint8.
    return np.clip(channel.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def _hsv_op(img: np.ndarray, channel: int, op) -> np.ndarray:  # noqa: ANN001 - array -> array
    hsv = np.array(Image.fromarray(img, "RGB").convert("HSV"))
    hsv[..., channel] = op(hsv[..., channel])
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def photometric_distortion(
    img: np.ndarray,
    rng: random.Random,
    brightness_delta: float = 32,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> np.ndarray:
    """mmseg's PhotoMetricDistortion on uint8 RGB (H, W, 3): each step with probability 1/2, in mmseg's order:
    brightness (+U(-32, 32)), contrast (x U(0.5, 1.5)) first or last, saturation (x U(0.5, 1.5)), hue
    (+[-18, 18) in OpenCV's 180-step hue, i.e. up to 36 degrees). HSV through Pillow (hue in 256 steps)."""
    if rng.random() < 0.5:
        img = _convert(img, beta=rng.uniform(-brightness_delta, brightness_delta))
    contrast_first = rng.random() < 0.5
    contrast = lambda a: _convert(a, alpha=rng.uniform(*contrast_range)) if rng.random() < 0.5 else a
    if contrast_first:
        img = contrast(img)
    if rng.random() < 0.5:
        alpha = rng.uniform(*saturation_range)
        img = _hsv_op(img, 1, lambda s: _convert(s, alpha=alpha))
    if rng.random() < 0.5:
        shift = round(rng.randrange(-hue_delta, hue_delta) * 256 / 180)
        img = _hsv_op(img, 0, lambda h: ((h.astype(np.int32) + shift) % 256).astype(np.uint8))
    if not contrast_first:
        img = contrast(img)
    return img


def pad_to(
    img: np.ndarray, mask: np.ndarray, size: tuple[int, int], fill: tuple[int, int, int], ignore_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pad (H, W, 3) and (H, W) at the bottom and right up to ``size`` (H, W): image ``fill``, mask ignored."""
    h, w = mask.shape
    if h >= size[0] and w >= size[1]:
        return img, mask
    out_img = np.empty((max(h, size[0]), max(w, size[1]), 3), dtype=img.dtype)
    out_img[...] = np.asarray(fill, dtype=img.dtype)
    out_img[:h, :w] = img
    out_mask = np.full(out_img.shape[:2], ignore_index, dtype=mask.dtype)
    out_mask[:h, :w] = mask
    return out_img, out_mask


def _tensors(img: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    # (H, W, 3) uint8, (H, W) ints -> (3, H, W) uint8, (H, W) int64
    image = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    return image, torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))


class SegTrainTransform:
    """Rescale, crop, flip, distort, pad: ``(RGB image, label map (H, W), rng) -> (uint8 (3, h, w), int64 (h, w))``
    with (h, w) = ``cfg.img_size``, so that samples stack into batches.

    Padding fills the image with the mean colour: mmseg pads after normalising, with 0, which is that colour."""

    def __init__(self, cfg: SegDataConfig) -> None:
        self.cfg = cfg
        self.fill = tuple(int(round(255 * m)) for m in cfg.mean)

    def __call__(self, img: Image.Image, mask: np.ndarray, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        ratio = rng.uniform(*cfg.ratio_range)
        size = rescale_size(*img.size, (int(cfg.scale[0] * ratio), int(cfg.scale[1] * ratio)))
        if size != img.size:
            img = img.resize(size, Image.BILINEAR)
        mask = resize_mask(mask, size)
        top, left = crop_offset(mask, cfg.img_size, cfg.cat_max_ratio, cfg.ignore_index, rng)
        bottom, right = top + cfg.img_size[0], left + cfg.img_size[1]
        pixels = np.asarray(img)[top:bottom, left:right]
        mask = mask[top:bottom, left:right]
        if rng.random() < cfg.hflip:
            pixels, mask = pixels[:, ::-1], mask[:, ::-1]
        if cfg.photometric:
            pixels = photometric_distortion(np.ascontiguousarray(pixels), rng)
        return _tensors(*pad_to(pixels, mask, cfg.img_size, self.fill, cfg.ignore_index))


class SegEvalTransform:
    """The evaluation image resized as ``cfg.eval_scale`` (and ``eval_size_divisor``) say; the label map as stored,
    since metrics are computed at the original size (as mmseg does). Deterministic."""

    def __init__(self, cfg: SegDataConfig) -> None:
        self.cfg = cfg

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) the model sees for an image stored at (width, height)."""
        size = (width, height) if self.cfg.eval_scale is None else rescale_size(width, height, self.cfg.eval_scale)
        return round_up(size, self.cfg.eval_size_divisor)

    def __call__(
        self, img: Image.Image, mask: np.ndarray, rng: random.Random | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.size(*img.size)
        if size != img.size:
            img = img.resize(size, Image.BILINEAR)
        return _tensors(np.asarray(img), mask)
