"""``vitkit eval --antispoof``: score a live/spoof set's development and test splits, fix the threshold on the
first, report the second's metrics, and draw its ROC and DET curves."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vitkit.adapters.loading import load_pretrained
from vitkit.data.augment import BatchAugment
from vitkit.data.config import DataConfig
from vitkit.data.datasets import ImageDataset
from vitkit.data.loader import create_loader
from vitkit.data.sample_transforms import EvalTransform
from vitkit.data.spoof import spoof_listing
from vitkit.eval.antispoof import SpoofMetrics, SpoofScores, choose_threshold, plot_roc_det, spoof_metrics
from vitkit.utils.device import autocast_for, resolve_device, resolve_precision


def live_index(classes: list[str]) -> int:
    """The class whose probability is the bona fide one: 'live', else the first (image folders sort live first)."""
    if "live" in classes:
        return classes.index("live")
    if classes == [str(i) for i in range(len(classes))]:
        return 0
    raise ValueError(
        f"the model's classes are {classes}, with no 'live'; fine-tune it on a live/spoof set (classes live and "
        "spoof, see docs/antispoofing.md)"
    )


@torch.no_grad()
def score_split(
    model: nn.Module, root: str | Path, split: str, *, batch_size: int = 256, device: str = "auto",
    precision: str = "fp32", num_workers: int = 0,
) -> SpoofScores:  # fmt: skip
    """Attack scores ``1 - P(live)`` of every image in ``split``, with their attack types."""
    source, types = spoof_listing(root, split)
    classes = [str(c) for c in (model.cfg.extra.get("classes") or [])] or [str(i) for i in range(2)]
    live = live_index(classes)
    cfg = DataConfig.from_model_config(model.cfg, num_workers=num_workers)
    dataset = ImageDataset(source, EvalTransform(cfg))
    normalise = BatchAugment(cfg, model.cfg.num_classes, train=False)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    model.to(dev).eval()
    scores = []
    loader = create_loader(dataset, batch_size, shuffle=False, num_workers=num_workers, seed=0, drop_last=False)
    for images, labels in loader:
        x, _ = normalise(images.to(dev), labels.to(dev))
        with autocast_for(precision, dev):
            probs = model(x).float().softmax(dim=-1)
        scores.append((1.0 - probs[:, live]).cpu().numpy())
    return SpoofScores(np.concatenate(scores).astype(np.float64), types)


def load_detector(checkpoint: str | Path, adapters: str | Path | None = None) -> nn.Module:
    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} not found")
    return load_pretrained(str(checkpoint), adapters=adapters).eval()


def evaluate_antispoof(
    checkpoint: str | Path | nn.Module,
    data: str | Path,
    *,
    dev_split: str = "dev",
    test_split: str = "test",
    threshold: str = "eer",
    adapters: str | Path | None = None,
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "fp32",
    num_workers: int = 0,
    out_dir: str | Path | None = None,
) -> SpoofMetrics:
    """Metrics of ``test_split`` at the threshold ``threshold`` ('eer' or 'bpcer=0.05') picks on ``dev_split``.
    Scores are computed in float32 by default: bfloat16 logits would tie many scores and coarsen the threshold.

    With ``out_dir``: ``antispoof.json``, ``roc.png`` and ``det.png`` are written there.
    """
    model = checkpoint if isinstance(checkpoint, nn.Module) else load_detector(checkpoint, adapters)
    score = partial(score_split, model, data, batch_size=batch_size, device=device, precision=precision,
                    num_workers=num_workers)  # fmt: skip
    dev = score(dev_split)
    t = choose_threshold(dev, threshold)
    test = score(test_split)
    metrics = spoof_metrics(test, t, threshold)
    if out_dir is not None:
        out = Path(out_dir)
        plot_roc_det(test, t, out, title=f"{Path(str(data)).name} / {test_split}")
        (out / "antispoof.json").write_text(json.dumps(metrics.to_dict(), indent=1) + "\n")
    return metrics
