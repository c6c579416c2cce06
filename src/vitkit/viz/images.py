"""Images in and out of the model for visualisation, through vitkit.data's evaluation transform.

Visualisation wants the whole picture, so the eval transform runs without its crop margin (crop_pct=1: resize
the shorter side, centre-crop to the requested size); inputs are normalised with the mean/std of the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vitkit.config import ViTConfig
from vitkit.data.augment import normalize
from vitkit.data.config import DataConfig
from vitkit.data.decode import is_image_file
from vitkit.data.sample_transforms import EvalTransform


def find_images(paths: Sequence[str | Path], limit: int | None = None) -> list[Path]:
    """Image files named by ``paths``; a folder contributes the images below it, in sorted order.

    Beyond ``limit`` files, an evenly spaced subset is kept, so a class-per-folder data set is sampled across
    its classes rather than cut after the first one.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p.name))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"image {str(path)!r} does not exist; pass image files or folders of images")
    if limit is None or len(found) <= limit:
        return found
    return [found[i * len(found) // limit] for i in range(limit)]


def load_images(paths: Sequence[str | Path], cfg: ViTConfig, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) uint8 pixels of each image fitted to ``size``, for :func:`to_input` and for display."""
    transform = EvalTransform(DataConfig.from_model_config(cfg), img_size=size, crop_pct=1.0)
    out = []
    for path in paths:
        try:
            with Image.open(path) as image:
                out.append(transform(image))
        except OSError as err:
            msg = f"cannot read image {str(path)!r} ({err}); pass a JPEG, PNG or another format Pillow reads"
            raise ValueError(msg) from None
    return torch.stack(out)


def to_input(pixels: torch.Tensor, cfg: ViTConfig) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float32 ``(x / 255 - mean) / std`` with the statistics the weights expect."""
    return normalize(pixels, cfg.mean, cfg.std)


def to_display(pixels: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) uint8 tensor -> (B, H, W, 3) uint8 array for matplotlib."""
    return pixels.permute(0, 2, 3, 1).contiguous().numpy()


def image_labels(paths: list[Path]) -> list[str]:
    """File names, with their folder when names repeat or are bare numbers (``bird/0003.jpg``, as in
    class-per-folder data sets, where the folder is what says something)."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names) and not any(p.stem.isdigit() for p in paths):
        return names
    return [f"{p.parent.name}/{p.name}" for p in paths]
