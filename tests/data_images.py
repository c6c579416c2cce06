"""Builders of small image folders and fake CIFAR archives for the data tests (everything made at test time)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def gradient_image(width: int, height: int) -> Image.Image:
    """Smooth content, so that resampling paths can be compared with a tight tolerance."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / max(1, width - 1), 255 * y / max(1, height - 1), 128 + 0 * x], -1)
    return Image.fromarray(rgb.round().astype(np.uint8), "RGB")


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def make_mixed_folder(root: Path) -> dict:
    """A two-class folder with every mode and nuisance the decoder must handle; returns what to expect."""
    cat, dog = root / "cat", root / "dog"
    (cat / "sub").mkdir(parents=True)
    dog.mkdir()
    (root / ".git").mkdir()
    noise_image(40, 30, 1).save(cat / "rgb.jpg", quality=95)
    Image.new("L", (17, 23), 77).save(cat / "gray.png")
    Image.new("RGBA", (12, 12), (10, 20, 30, 0)).save(cat / "rgba.png")
    pal = Image.new("P", (9, 9), 0)
    pal.putpalette([200, 100, 50, 0, 0, 0] + [0] * 762)
    pal.save(cat / "palette.png", transparency=1)
    cmyk = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    cmyk.save(cat / "cmyk.tif")
    cmyk.save(cat / "cmyk.jpg", quality=95)
    Image.fromarray(np.full((6, 6), 32896, dtype=np.uint16)).save(cat / "deep16.png")
    noise_image(33, 7, 2).save(cat / "odd.bmp")
    noise_image(10, 10, 3).save(cat / "sub" / "nested.png")
    (cat / "notes.txt").write_text("not an image")
    noise_image(10, 10, 4).save(cat / ".hidden.png")
    noise_image(10, 10, 5).save(root / ".git" / "x.png")
    (root / "README.md").write_text("ignored")
    noise_image(16, 16, 6).save(dog / "a.jpg")
    noise_image(16, 16, 7).save(dog / "b.png")
    (dog / "corrupt.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    data = jpeg_bytes(noise_image(64, 64, 8))
    (dog / "truncated.jpg").write_bytes(data[: len(data) * 6 // 10])
    (dog / "empty.png").write_bytes(b"")
    return {
        "classes": ["cat", "dog"],
        "counts": {"cat": 9, "dog": 2},
        "bad": ["corrupt.jpg", "truncated.jpg", "empty.png"],
    }


def make_class_folder(root: Path, classes: dict[str, int], size: tuple[int, int] = (24, 20), seed: int = 0) -> Path:
    """``root/<class>/<i>.png`` noise images: ``classes`` maps name -> count."""
    k = seed
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            noise_image(*size, seed=k).save(root / name / f"{i:03d}.png")
            k += 1
    return root


def write_cifar(path: Path, kind: str = "cifar10", per_batch: int = 4, seed: int = 0) -> np.ndarray:
    """A fake CIFAR pickle folder in the original layout; returns the train images (N, 32, 32, 3)."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    images = []
    if kind == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES]}
        meta_name, label_key = "batches.meta", b"labels"
    else:
        names = ["train", "test"]
        meta = {b"fine_label_names": [f"c{i}".encode() for i in range(100)]}
        meta_name, label_key = "meta", b"fine_labels"
    for name in names:
        hwc = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        rows = hwc.transpose(0, 3, 1, 2).reshape(per_batch, 3072)  # R plane, G plane, B plane
        labels = [int(v) for v in rng.integers(0, 10 if kind == "cifar10" else 100, per_batch)]
        with open(path / name, "wb") as fh:
            pickle.dump({b"data": rows, label_key: labels}, fh)
        if name != "test_batch" and name != "test":
            images.append(hwc)
    with open(path / meta_name, "wb") as fh:
        pickle.dump(meta, fh)
    return np.concatenate(images)
