"""One function per command: ``evaluate`` (vitkit eval), ``predict`` (vitkit predict) and
``fewshot_evaluate`` (vitkit fewshot). Each loads the model, asks its task (from the checkpoint) for the data the
model expects (its resolution, normalisation and crop) and runs the task's loop."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vitkit.data.augment import BatchAugment
from vitkit.data.config import DataConfig
from vitkit.data.datasets import build_dataset
from vitkit.data.loader import create_loader
from vitkit.eval.fewshot import FewShotResult, extract_features, fewshot_from_features, sample_shots
from vitkit.eval.loading import load_classifier, load_for_task
from vitkit.eval.prediction import image_paths
from vitkit.fast import for_inference
from vitkit.tasks import EvalContext, Report
from vitkit.utils.device import resolve_device, resolve_precision
from vitkit.utils.subsets import SubsetDataset, seeded_subset

log = logging.getLogger("vitkit.eval")


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
) -> Report:
    """``checkpoint`` on ``data``'s ``split``, evaluated as its task does: a classifier's top-1/top-5, loss,
    per-class accuracy and confusion matrix; a segmentor's mIoU, mAcc, aAcc and per-class IoU; an MAE's
    reconstruction loss.

    With ``out_dir`` the task's report files are written there (``metrics.json`` and a confusion-matrix PNG).
    ``img_size`` evaluates at another resolution (position embeddings resampled). ``adapters`` (a file or peft
    folder) is put onto ``checkpoint``. ``compile`` / ``precision="int8"`` run the fast path
    (:func:`vitkit.fast.optimize`; int8 is calibrated on 256 images of the train split, or of ``split`` when the
    data has none); int8 also runs the float32 model on the same images and reports the top-1 agreement with it
    (``result.agreement``): its accuracy cost. ``"auto"`` precision is bf16 where it is fast (a GPU, a CPU with
    AMX) and float32 elsewhere.
    """
    overrides: dict[str, Any] = {"img_size": img_size} if img_size else {}
    model, task = load_for_task(checkpoint, adapters=adapters, **overrides)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    model.to(dev)
    cfg = task.data_config_for(model.cfg, dataset=data, num_workers=num_workers)
    dataset = seeded_subset(task.dataset(cfg, split, augment=False), limit, 0)  # eval transform on any split
    info = task.eval_info(model, dataset, data)
    transform = task.batch_transform(cfg, info, train=False)
    loader = task.eval_loader(dataset, batch_size, num_workers)
    reference = model.eval() if precision == "int8" else None  # optimize returns a copy; the original stays
    model = for_inference(model, precision, compile, lambda: _calibration(task, cfg, dataset, transform, dev))
    ctx = EvalContext(transform, dev, precision, None, info, progress=True, reference=reference)
    report = task.evaluate(model, loader, ctx, task.default_objective(model))
    if out_dir is not None:
        task.write_report(report, out_dir)
    return report


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
    out_dir: str | Path | None = None,
) -> list[Any]:
    """What ``checkpoint``'s task answers for each image file, preprocessed as the model's eval transform: a
    classifier's top-``topk`` labels and probabilities; a segmentor's label map (``out_dir/<stem>_mask.png``), its
    palette overlay (``<stem>_overlay.png``) and per-class pixel shares. Unreadable files are named and skipped.

    ``compile`` / ``precision="int8"`` run the fast path (:func:`vitkit.fast.optimize`); int8 calibrates on the
    first batch of the images themselves.
    """
    model, task = load_for_task(checkpoint, command="vitkit predict")
    options = dict(topk=topk, batch_size=batch_size, device=device, precision=precision, compile=compile)
    if out_dir is not None:
        options["out_dir"] = out_dir
    return task.predict(model, image_paths(images), **options)


def _loader(dataset, batch_size: int, num_workers: int):
    return create_loader(dataset, batch_size, shuffle=False, num_workers=num_workers, seed=0, drop_last=False)


def _calibration(task, cfg, dataset, transform, device: torch.device, count: int = 256) -> list:
    """Model inputs for int8 calibration: a seeded subset of the train split (else of ``dataset``)."""
    try:
        source = task.dataset(cfg, "train", augment=False)
    except (FileNotFoundError, ValueError):
        source = dataset
    batches = []
    for images, labels in task.eval_loader(seeded_subset(source, count, 1), 64, 0):
        batches.append(transform(images.to(device), labels.to(device))[0])
    return batches


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
    model, _ = load_classifier(checkpoint)
    dev = resolve_device(device)
    model.to(dev)
    cfg = DataConfig.from_model_config(model.cfg, dataset=data, num_workers=num_workers)
    train_set = build_dataset(cfg, train_split, augment=False)  # frozen features of unaugmented images
    test_set = seeded_subset(build_dataset(cfg, test_split, augment=False), test_limit, 1)
    num_classes = len(train_set.classes)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    draws = {(s, k): sample_shots(train_set.targets, k, num_classes, s) for s in seed_list for k in shots}
    needed = sorted({i for idx in draws.values() for i in idx})
    position = {i: n for n, i in enumerate(needed)}
    augment = BatchAugment(cfg, num_classes, train=False)
    loader = _loader(SubsetDataset(train_set, needed), batch_size, num_workers)
    train_x, train_y = extract_features(model, loader, augment, dev, precision)
    test_x, test_y = extract_features(model, _loader(test_set, batch_size, num_workers), augment, dev, precision)
    local = {key: [position[i] for i in idx] for key, idx in draws.items()}
    return fewshot_from_features(
        train_x, train_y, test_x, test_y, num_classes, shots, seed_list, l2_reg, shot_indices=local
    )
