"""Evaluation of a classifier on a labelled split: top-1/top-5, loss, per-class accuracy, confusion matrix.

``evaluate_model`` is the loop shared by training (each epoch) and ``vitkit eval``; under several processes each
evaluates its shard and the counts are summed, so the result equals a single-process evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from vitkit.eval.metrics import EvalResult, MetricAccumulator, plot_confusion


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: Iterable,
    augment: Callable | None = None,
    *,
    device: torch.device | str = "cpu",
    precision: str = "auto",
    dist=None,
    classes: list[str] | None = None,
    progress: bool = True,
    reference: nn.Module | None = None,
) -> EvalResult:
    """Run ``model`` over ``loader`` batches of ``(uint8 images (B, 3, H, W), labels (B,))``.

    ``augment`` is the eval-mode ``BatchAugment`` (normalisation only); without it images must already be float.
    ``reference`` (a float32 model, run without autocast on the same batches) adds the top-1 agreement with it:
    the accuracy cost of a quantised or low-precision copy, measured on real images.
    """
    from vitkit.utils.device import autocast_for, resolve_precision
    from vitkit.utils.distributed import all_reduce_sum
    from vitkit.utils.progress import ProgressBar

    device = torch.device(device)
    precision = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    num_classes = model.cfg.num_classes if hasattr(model, "cfg") else None
    acc: MetricAccumulator | None = None
    total = len(loader) if hasattr(loader, "__len__") else 0
    bar = ProgressBar(total, "eval", enabled=progress and total > 1)
    agree = torch.zeros(2, dtype=torch.float64, device=device)  # [same top-1 as the reference, reference correct]
    for i, (images, labels) in enumerate(loader):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        x = augment(images, labels)[0] if augment is not None else images
        with autocast_for(precision, device):
            logits = model(x)
        if acc is None:
            acc = MetricAccumulator(num_classes or logits.shape[-1], device=device)
        acc.update(logits, labels)
        if reference is not None:
            ref = reference(x).argmax(-1)
            agree += torch.stack([(ref == logits.argmax(-1)).sum(), (ref == labels).sum()]).double()
        bar.update(i + 1)
    bar.close()
    model.train(was_training)
    if acc is None:
        acc = MetricAccumulator(num_classes or 1, device=device)
    if dist is not None and dist.enabled:
        all_reduce_sum(acc.totals, dist)
        all_reduce_sum(acc.confusion, dist)
        if reference is not None:  # no extra collective for the usual evaluation
            all_reduce_sum(agree, dist)
    result = acc.compute(classes)
    if reference is not None and result.num_samples:
        result.agreement, result.reference_top1 = (agree / result.num_samples).tolist()
    return result


def write_report(result: EvalResult, out_dir: str | Path) -> list[Path]:
    """Save ``metrics.json`` and ``confusion.png`` into ``out_dir``."""
    import json

    from vitkit.utils.files import atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_text(json.dumps(result.to_dict(), indent=1), out_dir / "metrics.json")
    png = Path(plot_confusion(result, str(out_dir / "confusion.png")))
    return [json_path, png]
