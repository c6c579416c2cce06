"""Classifying image files: what ``vitkit predict`` does for a classifier, image by image, bad files named.

Preprocessing is the model's evaluation transform (its resolution, normalisation and crop), so the answer for a
file equals what ``vitkit serve`` gives for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitkit.data.augment import BatchAugment
from vitkit.data.config import DataConfig
from vitkit.data.decode import DECODE_ERRORS, IMG_EXTENSIONS
from vitkit.data.sample_transforms import EvalTransform
from vitkit.utils.device import autocast_for, resolve_device, resolve_precision

log = logging.getLogger("vitkit.eval")


@dataclass
class Prediction:
    path: str
    labels: list[str]
    indices: list[int]
    probs: list[float]

    def to_dict(self) -> dict[str, Any]:
        top = [{"label": lab, "index": i, "prob": p} for lab, i, p in zip(self.labels, self.indices, self.probs)]
        return {"image": self.path, "top": top}

    def format(self) -> str:
        return "\n".join([self.path] + [f"  {100 * p:6.2f}%  {lab}" for lab, p in zip(self.labels, self.probs)])


def class_names(model: nn.Module) -> list[str]:
    """The names training recorded in ``cfg.extra["classes"]``, else '0', '1', ..."""
    cfg = model.cfg
    classes = [str(c) for c in cfg.extra.get("classes") or []]
    return classes if len(classes) == cfg.num_classes else [str(i) for i in range(cfg.num_classes)]


def read_images(paths: Sequence[str], transform: Any) -> tuple[list[str], list[torch.Tensor]]:
    """(readable paths, their transformed tensors); each unreadable file is named in one warning line."""
    kept, tensors = [], []
    for path in paths:
        try:
            from PIL import Image

            with Image.open(path) as img:
                tensors.append(transform(img))
            kept.append(path)
        except DECODE_ERRORS as err:  # truncated, empty, not an image, too large: name it and go on
            log.warning(f"skipped {path}: {decode_reason(err)}")
    return kept, tensors


@torch.no_grad()
def classify_images(
    model: nn.Module,
    paths: Sequence[str],
    topk: int = 5,
    *,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    compile: bool = False,
    out_dir: str | Path | None = None,
) -> list[Prediction]:
    """Top-``topk`` labels and probabilities for each image file (``out_dir`` serves tasks that write files).
    ``compile`` / ``precision="int8"`` run the fast path (:func:`vitkit.fast.optimize`); int8 calibrates on the
    first batch of the images themselves."""
    from vitkit.fast import for_inference

    classes = class_names(model)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    model = model.to(dev).eval()
    cfg = DataConfig.from_model_config(model.cfg)
    transform, normalise = EvalTransform(cfg), BatchAugment(cfg, model.cfg.num_classes, train=False)
    k = min(topk, model.cfg.num_classes)
    out: list[Prediction] = []
    fast_done = False
    for start in range(0, len(paths), batch_size):
        chunk, tensors = read_images(paths[start : start + batch_size], transform)
        if not chunk:
            continue
        batch = torch.stack(tensors).to(dev)  # (B, 3, H, W) uint8
        x, _ = normalise(batch, torch.zeros(len(chunk), dtype=torch.long, device=dev))
        if not fast_done:  # the fast path is built once, on the first batch that could be read
            model, fast_done = for_inference(model, precision, compile, lambda x=x: [x]), True
        with autocast_for(precision, dev):
            probs = model(x).float().softmax(dim=-1)
        top = probs.topk(k, dim=-1)
        for path, p, i in zip(chunk, top.values.tolist(), top.indices.tolist()):
            out.append(Prediction(path, [classes[j] for j in i], i, p))
    if not out:
        raise ValueError(f"none of the {len(paths)} image(s) could be read; see the lines above for each reason")
    return out


def image_paths(items: Sequence[str | Path]) -> list[str]:
    """Files as given, and each directory's image files (sorted, sub-folders included); a missing path raises."""
    paths = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
            if not found:
                raise ValueError(f"{path} is a folder without image files ({', '.join(IMG_EXTENSIONS)})")
            paths += found
        elif path.is_file():
            paths.append(str(path))
        else:
            raise FileNotFoundError(f"image {path} not found")
    return paths


def decode_reason(err: BaseException) -> str:
    """Pillow's error as the whole reason, short: 'truncated image file', 'not an image file', or a decompression
    bomb's pixel count against the limit."""
    text = str(err) if str(err) else type(err).__name__
    if "cannot identify image file" in text:
        return "not an image file (or an empty one)"
    if "truncated" in text.lower():
        return "truncated image file"
    return text.rstrip(".")
