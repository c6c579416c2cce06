"""Per-sample transforms, run in DataLoader workers: decode, crop, resize, flip -> uint8 tensor (3, H, W).

Each takes a lazily opened Pillow image and a ``random.Random`` seeded for that sample, so the output depends
only on (seed, epoch, index), never on the number of workers. Colour and mixing augmentations are batch work
(:mod:`vitkit.data.batch`).
"""

from __future__ import annotations

import math
import random

import torch
from PIL import Image

from vitkit.data.config import DataConfig
from vitkit.data.decode import crop_resize, to_tensor

RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
Box = tuple[float, float, float, float]


def rrc_box(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float], rng: random.Random
) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (left, top, w, h): area fraction ~ U(scale), log aspect ~ U(log ratio).

    Ten tries as in Szegedy et al. (2015) / torchvision; then the largest centred crop within ``ratio``.
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    return centre_box(width, height, ratio)


def centre_box(width: int, height: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def cover_box(width: int, height: int, out_w: int, out_h: int, crop_pct: float) -> Box:
    """Resize so the image covers (out / crop_pct), then centre-crop out: the box in source pixels.

    The shorter side goes to floor(out / crop_pct) as in timm's eval transform (224 / 0.875 = 256).
    """
    k = max(math.floor(out_h / crop_pct + 1e-6) / height, math.floor(out_w / crop_pct + 1e-6) / width)
    bw, bh = out_w / k, out_h / k
    left, top = (width - bw) / 2, (height - bh) / 2
    return (left, top, left + bw, top + bh)


def shift_crop(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The zero-padded random crop: out[y, x] = img[y + dy, x + dx], zero outside. (C, H, W) -> (C, H, W)."""
    _, h, w = img.shape
    out = torch.zeros_like(img)
    if abs(dy) < h and abs(dx) < w:
        out[:, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] = img[
            :, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
        ]
    return out


class TrainTransform:
    """RandomResizedCrop (``train_crop='rrc'``) or resize + zero-padded random crop ('pad'), then a random flip."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.out_h, self.out_w = cfg.img_size
        self.resample = RESAMPLE[cfg.interpolation]

    def __call__(self, img: Image.Image, rng: random.Random) -> torch.Tensor:
        cfg = self.cfg
        if cfg.train_crop == "rrc":

            def plan(width: int, height: int) -> tuple[Box, tuple[int, int]]:
                left, top, w, h = rrc_box(width, height, cfg.scale, cfg.ratio, rng)
                return (left, top, left + w, top + h), (self.out_w, self.out_h)

            out = to_tensor(crop_resize(img, plan, self.resample))
        else:
            plan = lambda width, height: (
                cover_box(width, height, self.out_w, self.out_h, 1.0),
                (self.out_w, self.out_h),
            )
            out = to_tensor(crop_resize(img, plan, self.resample))
            p = cfg.padding
            if p:
                out = shift_crop(out, rng.randint(-p, p), rng.randint(-p, p))
        if rng.random() < cfg.hflip:
            out = out.flip(-1)
        return out


class EvalTransform:
    """Resize to img_size / crop_pct (shorter side) and centre-crop img_size; deterministic."""

    def __init__(self, cfg: DataConfig, img_size: tuple[int, int] | None = None, crop_pct: float | None = None) -> None:
        self.out_h, self.out_w = img_size or cfg.img_size
        self.crop_pct = cfg.crop_pct if crop_pct is None else crop_pct
        self.resample = RESAMPLE[cfg.interpolation]

    def plan(self, width: int, height: int) -> tuple[Box, tuple[int, int]]:
        return cover_box(width, height, self.out_w, self.out_h, self.crop_pct), (self.out_w, self.out_h)

    def __call__(self, img: Image.Image, rng: random.Random | None = None) -> torch.Tensor:
        return to_tensor(crop_resize(img, self.plan, self.resample))
