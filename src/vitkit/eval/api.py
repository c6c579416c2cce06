"""One function per command: ``evaluate`` (vitkit eval), ``predict`` (vitkit predict) and
``fewshot_evaluate`` (vitkit fewshot). Each loads the model, builds the data the model expects (its resolution,
normalisation and crop) and runs the matching loop."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vitkit.data.decode import DECODE_ERRORS
from vitkit.eval.evaluate import evaluate_model, write_report
from vitkit.eval.fewshot import FewShotResult, extract_features, fewshot_from_features, sample_shots
from vitkit.eval.loading import load_classifier
from vitkit.eval.metrics import EvalResult
from vitkit.utils.device import autocast_for, resolve_precision

log = logging.getLogger("vitkit.eval")


def _device(name: str) -> torch.device:
    from vitkit.utils.device import resolve_device

    return resolve_device(name)


def _data_config(model, dataset: str | None, **changes: Any):
    from vitkit.data import DataConfig

    fields = {"dataset": dataset} if dataset else {}
    return DataConfig.from_model_config(model.cfg, **fields, **changes)


def _loader(dataset, batch_size: int, num_workers: int):
    from vitkit.data import create_loader

    return create_loader(dataset, batch_size, shuffle=False, num_workers=num_workers, seed=0, drop_last=False)


def _subset(dataset, limit: int | None, seed: int = 0):
    from vitkit.utils.subsets import seeded_subset

    return seeded_subset(dataset, limit, seed)


def evaluate(
    checkpoint: str | Path,
    data: str,
    split: str = "test",
    *,
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "auto",
    num_workers: int = 2,
    limit: int | None = None,
    img_size: int | None = None,
    out_dir: str | Path | None = None,
    adapters: str | Path | None = None,
    compile: bool = False,
) -> EvalResult:
    """Top-1/top-5, loss, per-class accuracy and confusion matrix of ``checkpoint`` on ``data``'s ``split``.

    With ``out_dir``, ``metrics.json`` and ``confusion.png`` are written there. ``img_size`` evaluates at another
    resolution (position embeddings resampled). ``adapters`` (a file or peft folder) is put onto ``checkpoint``.
    ``compile`` / ``precision="int8"`` run the fast path (:func:`vitkit.fast.optimize`; int8 is calibrated on 256
    images of the train split, or of ``split`` when the data has none). int8 also runs the float32 model on the
    same images and reports the top-1 agreement with it (``result.agreement``): its accuracy cost. ``"auto"``
    precision is bf16 where it is fast (a GPU, a CPU with AMX) and float32 elsewhere.
    """
    from vitkit.data import BatchAugment, build_dataset

    overrides = {"img_size": img_size} if img_size else {}
    if adapters is not None:
        overrides["adapters"] = adapters
    model, classes = load_classifier(checkpoint, **overrides)
    dev = _device(device)
    precision = resolve_precision(precision, dev)
    model.to(dev)
    cfg = _data_config(model, data, num_workers=num_workers)
    dataset = _subset(build_dataset(cfg, split, augment=False), limit)  # eval transform on any split
    data_classes = list(getattr(dataset, "classes", []) or [])
    if data_classes and len(data_classes) != model.cfg.num_classes:
        raise ValueError(
            f"the model predicts {model.cfg.num_classes} classes but {data} has {len(data_classes)}; evaluate on "
            "the data it was trained on, or fine-tune it first (vitkit finetune)"
        )
    augment = BatchAugment(cfg, model.cfg.num_classes, train=False)
    loader = _loader(dataset, batch_size, num_workers)
    reference = model.eval() if precision == "int8" else None  # optimize returns a copy; the original stays
    model = _fast(model, precision, compile, lambda: _calibration(cfg, dataset, augment, dev, num_workers))
    result = evaluate_model(
        model, loader, augment, device=dev, precision=precision, classes=data_classes or classes, reference=reference
    )
    if out_dir is not None:
        write_report(result, out_dir)
    return result


@dataclass
class Prediction:
    path: str
    labels: list[str]
    indices: list[int]
    probs: list[float]

    def to_dict(self) -> dict[str, Any]:
        top = [{"label": lab, "index": i, "prob": p} for lab, i, p in zip(self.labels, self.indices, self.probs)]
        return {"image": self.path, "top": top}


@torch.no_grad()
def predict(
    images: Sequence[str | Path],
    checkpoint: str | Path,
    topk: int = 5,
    *,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    compile: bool = False,
) -> list[Prediction]:
    """Top-``topk`` labels and probabilities for each image file, preprocessed as the model's eval transform.

    ``compile`` / ``precision="int8"`` run the fast path (:func:`vitkit.fast.optimize`); int8 calibrates on the
    first batch of the images themselves.
    """
    from PIL import Image

    from vitkit.data import BatchAugment
    from vitkit.data.sample_transforms import EvalTransform

    model, classes = load_classifier(checkpoint)
    dev = _device(device)
    precision = resolve_precision(precision, dev)
    model.to(dev)
    cfg = _data_config(model, None)
    transform = EvalTransform(cfg)
    normalise = BatchAugment(cfg, model.cfg.num_classes, train=False)
    k = min(topk, model.cfg.num_classes)
    out: list[Prediction] = []
    paths = image_paths(images)
    read = 0
    fast_done = False
    for start in range(0, len(paths), batch_size):
        chunk, tensors = [], []
        for path in paths[start : start + batch_size]:
            try:
                with Image.open(path) as img:
                    tensors.append(transform(img))  # (3, H, W) uint8
                chunk.append(path)
            except DECODE_ERRORS as err:  # truncated, empty, or not an image: name it and go on with the others
                log.warning(f"skipped {path}: {_reason(err)}")
        if not chunk:
            continue
        read += len(chunk)
        batch = torch.stack(tensors).to(dev)
        x, _ = normalise(batch, torch.zeros(len(chunk), dtype=torch.long, device=dev))
        if not fast_done:  # the fast path is built once, on the first batch that could be read
            model, fast_done = _fast(model, precision, compile, lambda x=x: [x]), True
        with autocast_for(precision, dev):
            probs = model(x).float().softmax(dim=-1)
        top = probs.topk(k, dim=-1)
        for path, p, i in zip(chunk, top.values.tolist(), top.indices.tolist()):
            out.append(Prediction(path, [classes[j] for j in i], i, p))
    if not read:
        raise ValueError(f"none of the {len(paths)} image(s) could be read; see the lines above for each reason")
    return out


def _fast(model, precision: str, compile: bool, calibration):
    from vitkit.fast import for_inference

    return for_inference(model, precision, compile, calibration)


def _calibration(cfg, dataset, augment, device: torch.device, num_workers: int, count: int = 256) -> list:
    """Normalised images for int8 calibration: a seeded subset of the train split (else of ``dataset``)."""
    from vitkit.data import build_dataset

    try:
        source = build_dataset(cfg, "train", augment=False)
    except (FileNotFoundError, ValueError):
        source = dataset
    batches = []
    for images, labels in _loader(_subset(source, count, seed=1), 64, num_workers):
        batches.append(augment(images.to(device), labels.to(device))[0])
    return batches


def image_paths(items: Sequence[str | Path]) -> list[str]:
    """Files as given, and each directory's image files (sorted, sub-folders included); a missing path raises."""
    from vitkit.data import IMG_EXTENSIONS

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


def _reason(err: BaseException) -> str:
    """Pillow's error as a short reason: 'truncated file', 'not an image file', ..."""
    text = str(err).split(" (", 1)[0] if str(err) else type(err).__name__
    if "cannot identify image file" in text:
        return "not an image file (or an empty one)"
    if "truncated" in text.lower():
        return "truncated image file"
    return text


def fewshot_evaluate(
    checkpoint: str | Path,
    data: str,
    shots: Sequence[int] = (1, 5, 10, 25),
    seeds: int | Sequence[int] = 3,
    l2_reg: float = 1024.0,
    *,
    train_split: str = "train",
    test_split: str = "test",
    test_limit: int | None = None,
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "auto",
    num_workers: int = 2,
) -> FewShotResult:
    """The paper's few-shot linear evaluation of ``checkpoint``'s frozen features on ``data``.

    Only the images the draws need are passed through the model: ``max(shots)`` per class and seed, plus the
    test split (or ``test_limit`` images of it).
    """
    from vitkit.data import BatchAugment, build_dataset

    model, _ = load_classifier(checkpoint)
    dev = _device(device)
    model.to(dev)
    cfg = _data_config(model, data, num_workers=num_workers)
    train_set = build_dataset(cfg, train_split, augment=False)  # frozen features of unaugmented images
    test_set = _subset(build_dataset(cfg, test_split, augment=False), test_limit, seed=1)
    num_classes = len(train_set.classes)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    draws = {(s, k): sample_shots(train_set.targets, k, num_classes, s) for s in seed_list for k in shots}
    needed = sorted({i for idx in draws.values() for i in idx})
    position = {i: n for n, i in enumerate(needed)}
    augment = BatchAugment(cfg, num_classes, train=False)
    from vitkit.utils.subsets import SubsetDataset

    loader = _loader(SubsetDataset(train_set, needed), batch_size, num_workers)
    train_x, train_y = extract_features(model, loader, augment, dev, precision)
    test_x, test_y = extract_features(model, _loader(test_set, batch_size, num_workers), augment, dev, precision)
    local = {key: [position[i] for i in idx] for key, idx in draws.items()}
    return fewshot_from_features(
        train_x, train_y, test_x, test_y, num_classes, shots, seed_list, l2_reg, shot_indices=local
    )
