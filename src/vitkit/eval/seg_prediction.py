"""Segmenting image files: what ``vitkit predict`` does for a segmentation checkpoint.

Each image is resized as the checkpoint was evaluated in training (its ``cfg.extra["eval"]``: test scale, whole or
sliding-window inference, crop and stride), segmented, and the label map brought back to the image's own size;
``OUT/<stem>_mask.png`` holds the class ids (a palette PNG), ``OUT/<stem>_overlay.png`` the palette over the image,
and the result the share of pixels per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from vitkit.data.augment import normalize
from vitkit.data.decode import decode
from vitkit.data.seg_transforms import rescale_size, round_up
from vitkit.eval.prediction import read_images
from vitkit.eval.seg_inference import overlay, save_label_png, segment
from vitkit.utils.device import autocast_for, resolve_device, resolve_precision
from vitkit.utils.files import atomic_path


@dataclass
class Segmentation:
    path: str
    mask: Path | None
    overlay: Path | None
    shares: dict[str, float]  # class name -> share of the image's pixels, largest first

    def to_dict(self) -> dict[str, Any]:
        files = {"mask": str(self.mask) if self.mask else None, "overlay": str(self.overlay) if self.overlay else None}
        return {"image": self.path, **files, "shares": self.shares}

    def format(self) -> str:
        top = "  ".join(f"{name} {100 * share:.1f}%" for name, share in list(self.shares.items())[:5])
        where = f" -> {self.mask}, {self.overlay}" if self.mask else ""
        return f"{self.path}: {top}{where}"


def eval_settings(cfg: Any) -> dict[str, Any]:
    """How a segmentation checkpoint is evaluated: what training recorded in ``cfg.extra["eval"]``, else whole
    images at their own size rounded up to a multiple of 32."""
    crop = tuple(cfg.img_size)
    default = {"mode": "whole", "crop": crop, "stride": tuple(2 * c // 3 for c in crop), "scale": None,
               "size_divisor": 32}  # fmt: skip
    return {**default, **(cfg.extra.get("eval") or {})}


def palette_of(cfg: Any) -> list[tuple[int, int, int]]:
    """The checkpoint's palette, else a fixed pseudo-random one (the same colours every time)."""
    stored = cfg.extra.get("palette")
    if stored:
        return [tuple(int(v) for v in rgb) for rgb in stored]
    rng = np.random.default_rng(0)
    return [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(cfg.num_classes)]


@torch.no_grad()
def label_map(model: nn.Module, image: Image.Image, device: torch.device) -> torch.Tensor:
    """(H, W) int64 class ids of an RGB image, at its own size, as the checkpoint is evaluated."""
    cfg, settings = model.cfg, eval_settings(model.cfg)
    size = image.size
    if settings["scale"]:
        size = rescale_size(*size, settings["scale"])
    size = round_up(size, settings["size_divisor"])
    pixels = torch.from_numpy(np.asarray(image.resize(size, Image.BILINEAR) if size != image.size else image))
    x = normalize(pixels.permute(2, 0, 1)[None].to(device), cfg.mean, cfg.std)
    out = segment(model, x, settings["mode"], settings["crop"], settings["stride"], out_size=image.size[::-1])
    return out[0].cpu()


@torch.no_grad()
def segment_images(
    model: nn.Module,
    paths: Sequence[str],
    out_dir: str | Path | None = None,
    *,
    device: str = "auto",
    precision: str = "fp32",
    compile: bool = False,
    **unused: Any,
) -> list[Segmentation]:
    """Per image file: the label map and overlay written to ``out_dir`` (when given) and the class shares."""
    cfg, dev = model.cfg, resolve_device(device)
    precision = resolve_precision(precision, dev)
    if precision == "int8" or compile:
        raise ValueError("the int8 and compiled fast paths are for classifiers; segment with --precision fp32 or bf16")
    model = model.to(dev).eval()
    classes = [str(c) for c in cfg.extra.get("classes") or range(cfg.num_classes)]
    palette = palette_of(cfg)
    out = Path(out_dir) if out_dir is not None else None
    results = []
    for path in paths:
        kept, images = read_images([path], decode)
        if not kept:
            continue
        image = images[0]
        with autocast_for(precision, dev):
            labels = label_map(model, image, dev)
        counts = torch.bincount(labels.flatten(), minlength=len(classes)).double() / labels.numel()
        shares = {classes[i]: float(counts[i]) for i in counts.argsort(descending=True).tolist() if counts[i] > 0}
        mask_file = overlay_file = None
        if out is not None:
            stem = Path(path).stem
            mask_file = save_label_png(labels.numpy(), out / f"{stem}_mask.png", palette)
            overlay_file = out / f"{stem}_overlay.png"
            with atomic_path(overlay_file, suffix=".png") as tmp:
                overlay(image, labels, palette).save(tmp, format="PNG")
        results.append(Segmentation(path, mask_file, overlay_file, shares))
    if not results:
        raise ValueError(f"none of the {len(paths)} image(s) could be read; see the lines above for each reason")
    return results
