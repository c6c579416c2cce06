"""Images in and out of the model for visualisation: load, resize and normalise as the weights expect.

Visualisation wants the whole picture, so images are resized (shorter side) and centre-cropped to the requested
size without the eval crop margin; inputs are normalised with the mean/std that travel with the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vitkit.config import ViTConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def find_images(paths: Sequence[str | Path], limit: int | None = None) -> list[Path]:
    """Image files named by ``paths``; a folder contributes the images below it, in sorted order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"image {str(path)!r} does not exist; pass image files or folders of images")
    if limit is not None:
        found = found[:limit]
    return found


def fit_image(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Resize so the image covers ``size`` (H, W), centre-crop to it; (H, W, 3) uint8 RGB."""
    h, w = size
    scale = max(h / image.height, w / image.width)
    resized = image.convert("RGB").resize(
        (max(w, round(image.width * scale)), max(h, round(image.height * scale))), Image.Resampling.BICUBIC
    )
    top, left = (resized.height - h) // 2, (resized.width - w) // 2
    return np.asarray(resized.crop((left, top, left + w, top + h)), dtype=np.uint8)


def to_input(pixels: np.ndarray, cfg: ViTConfig) -> torch.Tensor:
    """(B, H, W, 3) or (H, W, 3) uint8 -> (B, 3, H, W) float32 normalised as ``(x / 255 - mean) / std``."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).float().div(255.0)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    x = x.permute(0, 3, 1, 2)  # (B, H, W, 3) -> (B, 3, H, W)
    mean = torch.tensor(cfg.mean).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std).view(1, -1, 1, 1)
    return (x - mean) / std


def load_images(paths: Sequence[str | Path], size: tuple[int, int]) -> np.ndarray:
    """Load and fit each image to ``size``: (B, H, W, 3) uint8, ready for :func:`to_input` and for display."""
    out = []
    for path in paths:
        try:
            with Image.open(path) as image:
                out.append(fit_image(image, size))
        except OSError as err:
            msg = f"cannot read image {str(path)!r} ({err}); pass a JPEG, PNG or another format Pillow reads"
            raise ValueError(msg) from None
    return np.stack(out)
