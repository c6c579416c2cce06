"""Pillow decoding to RGB: every mode converted, EXIF orientation applied, JPEG draft mode when down-scaling.

Everything downstream assumes 8-bit RGB, so grayscale, palette, RGBA/LA (alpha dropped, as torchvision and
timm do), CMYK and 16-bit images are converted here, once.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
# Errors Pillow raises for unreadable, truncated or unsupported files.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError, EOFError)
_ORIENTATION = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees
# What a complete file ends with (scanned in its last bytes): catches truncation without decoding.
_TRAILERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND", "GIF": b"\x3b"}
_TAIL_BYTES = 1024

# (oriented width, height) -> (crop box in those coordinates, output (width, height)) for one image.
CropPlan = Callable[[int, int], tuple[tuple[float, float, float, float], tuple[int, int]]]


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_ORIENTATION, 1))
    except DECODE_ERRORS:  # a damaged EXIF block must not make the pixels unreadable
        return 1


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed, i.e. after the EXIF rotation."""
    w, h = img.size
    return (h, w) if orientation(img) in _SWAPS_AXES else (w, h)


def check_file(path: str | os.PathLike) -> tuple[int, int]:
    """Cheap validity check: parse the header and look for the format's end marker; returns the oriented size.

    Raises one of :data:`DECODE_ERRORS` for a non-image, an unsupported format or a truncated file.
    """
    with open(path, "rb") as fh:
        img = Image.open(fh)
        size = oriented_size(img)
        trailer = _TRAILERS.get(img.format or "")
        if trailer is not None:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, end - _TAIL_BYTES))
            if trailer not in fh.read():
                raise OSError(f"truncated {img.format} file (no end marker)")
    return size


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit grayscale: Pillow's convert('RGB') would clip at 255; rescale the full range instead.
        arr = np.asarray(img, dtype=np.float32)
        img = Image.fromarray(np.clip(arr / 257.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        peak = 1.0 if arr.size and arr.max() <= 1.0 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # the direct P -> RGB conversion warns about byte transparency
    return img.convert("RGB")


def decode(img: Image.Image, need: tuple[float, float] | None = None) -> Image.Image:
    """Decode a lazily opened image into an oriented RGB image.

    ``need`` is the smallest (width, height) of the whole oriented image the caller will use; a JPEG is then
    decoded at 1/2, 1/4 or 1/8 scale when that still covers it (libjpeg's DCT scaling: much faster).
    """
    turn = orientation(img)
    if need is not None and img.format == "JPEG":
        nw, nh = need
        if turn in _SWAPS_AXES:
            nw, nh = nh, nw
        img.draft(None, (max(1, int(nw)), max(1, int(nh))))
    img.load()
    if turn != 1:
        img = ImageOps.exif_transpose(img)
    return _to_rgb(img)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """The whole image at full resolution, oriented, in RGB."""
    with Image.open(path) as img:
        return decode(img)


def crop_resize(img: Image.Image, plan: CropPlan, resample: int) -> Image.Image:
    """Apply ``plan`` to a lazily opened image, letting the decoder skip resolution the output does not need."""
    width, height = oriented_size(img)
    box, out = plan(width, height)
    bw, bh = box[2] - box[0], box[3] - box[1]
    k = max(out[0] / bw, out[1] / bh)  # output pixels per source pixel along the tighter axis
    rgb = decode(img, (width * k, height * k))
    sx, sy = rgb.width / width, rgb.height / height
    box = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    if rgb.size == out and box == (0, 0, rgb.width, rgb.height):
        return rgb
    return rgb.resize(out, resample, box=box)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor (3, H, W)."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
