"""CIFAR-10-C-style common corruptions (Hendrycks & Dietterich, ICLR 2019) for a domain-shifted copy of a data set.

The severity constants are the published CIFAR-10-C ones (``make_cifar_c.py`` of hendrycks/robustness); the
implementations here are NumPy/PIL re-writes without OpenCV, scikit-image or ImageMagick, so the corrupted
images are in the same style, not byte-identical to the released set. Corruptions needing external textures
(frost) or ImageMagick (motion blur, snow) are left out.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]  # float (H, W, 3) in [0, 1]


def _pil(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


def gaussian_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.04, 0.06, 0.08, 0.09, 0.10][s - 1]
    return x + rng.normal(size=x.shape, scale=c)


def shot_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [500, 250, 100, 75, 50][s - 1]
    return rng.poisson(x * c) / c


def impulse_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.01, 0.02, 0.03, 0.05, 0.07][s - 1]
    hit = rng.random(x.shape) < c  # salt and pepper per value, half each
    return np.where(hit, (rng.random(x.shape) < 0.5).astype(x.dtype), x)


def speckle_noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.06, 0.1, 0.12, 0.16, 0.2][s - 1]
    return x + x * rng.normal(size=x.shape, scale=c)


def gaussian_blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.4, 0.6, 0.7, 0.8, 1.0][s - 1]
    return _arr(_pil(x).filter(ImageFilter.GaussianBlur(c)))


def defocus_blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][s - 1]
    k = int(np.ceil(radius))
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    padded = np.pad(x, ((k, k), (k, k), (0, 0)), mode="reflect")
    h, w = x.shape[:2]
    out = sum(disk[i, j] * padded[i : i + h, j : j + w] for i in range(2 * k + 1) for j in range(2 * k + 1))
    return _arr(_pil(out).filter(ImageFilter.GaussianBlur(alias)))


def contrast(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.75, 0.5, 0.4, 0.3, 0.15][s - 1]
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * c + means


def brightness(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """HSV value + c with hue and saturation kept: RGB scales by V'/V (grey for black pixels)."""
    c = [0.05, 0.1, 0.15, 0.2, 0.3][s - 1]
    v = x.max(axis=2, keepdims=True)
    v_new = np.clip(v + c, 0, 1)
    return np.where(v > 0, x * v_new / np.maximum(v, 1e-12), v_new)


def saturate(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """HSV saturation * a + b with hue and value kept: the distance from V scales by S'/S."""
    a, b = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][s - 1]
    v = x.max(axis=2, keepdims=True)
    sat = np.where(v > 0, (v - x.min(axis=2, keepdims=True)) / np.maximum(v, 1e-12), 0.0)
    sat_new = np.clip(sat * a + b, 0, 1)
    return np.where(sat > 0, v - (v - x) * sat_new / np.maximum(sat, 1e-12), x)


def jpeg_compression(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [80, 65, 58, 50, 40][s - 1]
    buf = io.BytesIO()
    _pil(x).save(buf, format="JPEG", quality=c)
    buf.seek(0)
    return _arr(Image.open(buf))


def pixelate(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = [0.95, 0.9, 0.85, 0.75, 0.65][s - 1]
    img = _pil(x)
    w, h = img.size
    return _arr(img.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX))


CORRUPTIONS: dict[str, Corruption] = {
    f.__name__: f
    for f in (
        gaussian_noise, shot_noise, impulse_noise, speckle_noise, gaussian_blur, defocus_blur, contrast,
        brightness, saturate, jpeg_compression, pixelate,
    )
}  # fmt: skip


def corrupt(img: Image.Image, name: str, severity: int, rng: np.random.Generator) -> Image.Image:
    """``img`` with corruption ``name`` at ``severity`` 1-5."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if not 1 <= severity <= 5:
        raise ValueError(f"corruption severity must be 1..5 (CIFAR-10-C's levels), got {severity}")
    return _pil(np.clip(CORRUPTIONS[name](_arr(img), severity, rng), 0, 1))


def make_corrupted(
    src: str | os.PathLike,
    out: str | os.PathLike,
    severity: int = 5,
    names: list[str] | None = None,
    seed: int = 0,
) -> int:
    """Copy the image tree under ``src`` to ``out`` (same relative paths, as PNG), each image with one corruption
    drawn from ``names`` (default: all) at ``severity``: a domain-shifted copy that trains and evaluates like the
    original. Deterministic given ``seed``. Returns the number of images written."""
    from vitkit.data.decode import is_image_file
    from vitkit.utils.progress import Progress

    src, out = Path(src), Path(out)
    names = list(names or CORRUPTIONS)
    for name in names:
        if name not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    files = sorted(p for p in src.rglob("*") if p.is_file() and is_image_file(p.name) and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no images under {src}; pass an image folder (e.g. CIFAR-10's folder)")
    with Progress(len(files), "corrupt", unit="img") as bar:
        for i, path in enumerate(files):
            rng = np.random.default_rng([seed, i])
            name = names[int(rng.integers(len(names)))]
            target = (out / path.relative_to(src)).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as img:
                corrupt(img, name, severity, rng).save(target)
            bar.update(1)
    return len(files)
