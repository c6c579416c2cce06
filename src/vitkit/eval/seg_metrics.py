"""Semantic-segmentation metrics as mmsegmentation computes them: areas summed over the whole set, then ratios.

Per class c, over every evaluated pixel whose label is not ``ignore_index``: intersection = pixels labelled c and
predicted c, prediction area, label area, union = prediction + label - intersection. Then IoU = intersection /
union and Acc = intersection / label area per class, mIoU and mAcc their nanmean (a class with no union, or no
labelled pixel for Acc, is NaN and does not count), and aAcc = all intersections / all labelled pixels.

Summing areas before dividing is what ADE20K numbers mean: averaging per-image IoUs instead weights a small image
or a rare class in one picture as much as a whole scene, and gives a different (usually lower) number. All four
areas follow from the confusion matrix, which the accumulator keeps (int64 counts, so processes add up exactly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from vitkit.utils.distributed import DistInfo, all_reduce_sum
from vitkit.utils.files import atomic_save_figure


@dataclass
class SegResult:
    """Fractions in [0, 1] (NaN where undefined); ``confusion[i, j]`` counts pixels labelled i predicted j."""

    aAcc: float  # noqa: N815 - mmseg's name
    mIoU: float  # noqa: N815
    mAcc: float  # noqa: N815
    iou: list[float]
    acc: list[float]
    confusion: torch.Tensor
    classes: list[str] = field(default_factory=list)
    # a few evaluated images as (uint8 image (H, W, 3), label map, prediction) for the report's picture
    examples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list, repr=False, compare=False)
    palette: list[tuple[int, int, int]] = field(default_factory=list, repr=False, compare=False)

    @property
    def num_pixels(self) -> int:
        return int(self.confusion.sum())

    def summary(self) -> dict[str, float | int]:
        return {"aAcc": self.aAcc, "mIoU": self.mIoU, "mAcc": self.mAcc, "num_pixels": self.num_pixels}

    def numbers(self) -> dict[str, float]:
        """What a training metrics row gets from the evaluation."""
        return {"mIoU": self.mIoU, "mAcc": self.mAcc, "aAcc": self.aAcc}

    def brief(self) -> dict:
        """What ``vitkit eval --json`` prints: everything but the confusion matrix."""
        return self.to_dict()

    def to_dict(self) -> dict:
        """JSON-ready: NaN (a class absent from labels and predictions) becomes None."""
        clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v
        names = self.classes or [str(i) for i in range(len(self.iou))]
        return {
            **{k: clean(v) for k, v in self.summary().items()},
            "per_class": {n: {"IoU": clean(i), "Acc": clean(a)} for n, i, a in zip(names, self.iou, self.acc)},
            "classes": names,
        }

    def format(self) -> str:
        """mmseg's table: per-class IoU and Acc in percent, then aAcc, mIoU, mAcc."""
        names = self.classes or [str(i) for i in range(len(self.iou))]
        width = max([5, *map(len, names)])
        pct = lambda v: "  nan" if math.isnan(v) else f"{100 * v:5.2f}"
        lines = [f"{'Class':<{width}}    IoU    Acc"]
        lines += [f"{n:<{width}}  {pct(i)}  {pct(a)}" for n, i, a in zip(names, self.iou, self.acc)]
        lines.append(f"aAcc {pct(self.aAcc)}  mIoU {pct(self.mIoU)}  mAcc {pct(self.mAcc)}  ({self.num_pixels:,} px)")
        return "\n".join(lines)


def _nanmean(values: torch.Tensor) -> float:
    kept = values[~values.isnan()]
    return float(kept.mean()) if kept.numel() else float("nan")


def metrics_from_confusion(confusion: torch.Tensor, classes: list[str] | None = None) -> SegResult:
    """IoU, Acc, mIoU, mAcc and aAcc from a (K, K) confusion matrix (rows: label, columns: prediction)."""
    conf = confusion.double().cpu()
    intersect = conf.diagonal()
    area_label, area_pred = conf.sum(dim=1), conf.sum(dim=0)
    union = area_pred + area_label - intersect
    iou = intersect / union  # 0 / 0 = NaN: the class is absent from both
    acc = intersect / area_label
    total = float(area_label.sum())
    return SegResult(
        aAcc=float(intersect.sum()) / total if total else float("nan"),
        mIoU=_nanmean(iou),
        mAcc=_nanmean(acc),
        iou=iou.tolist(),
        acc=acc.tolist(),
        confusion=confusion.cpu(),
        classes=list(classes or []),
    )


class SegMetricAccumulator:
    """Sums the confusion matrix over batches of label maps; :meth:`compute` turns it into :class:`SegResult`.

    ``update`` takes predicted class ids (from the logits' argmax) and labels of the same shape. A label outside
    ``0..num_classes-1`` other than ``ignore_index`` raises: it means the class list does not match the data,
    and mmseg's silent drop of such pixels would hide that.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str = "cpu") -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """``pred`` and ``label``: integer maps (B, H, W) or (H, W) of the same shape, on any device."""
        if pred.shape != label.shape:
            raise ValueError(
                f"prediction {tuple(pred.shape)} and label {tuple(label.shape)} differ in shape; resize the logits "
                "to the label's size before the argmax (metrics are computed at the original size)"
            )
        k = self.num_classes
        pred, label = pred.reshape(-1).to(self.confusion.device), label.reshape(-1).to(self.confusion.device)
        keep = label != self.ignore_index
        pred, label = pred[keep].long(), label[keep].long()
        bad_label = (label < 0) | (label >= k)
        if bool(bad_label.any()):
            ids = torch.unique(label[bad_label])[:8].tolist()
            raise ValueError(
                f"label ids {ids} outside 0..{k - 1} (ignore_index {self.ignore_index}); check the class list"
            )
        if bool(((pred < 0) | (pred >= k)).any()):
            raise ValueError(f"predicted ids outside 0..{k - 1}; the model's output has a different number of classes")
        self.confusion += torch.bincount(label * k + pred, minlength=k * k).view(k, k)

    def merge(self, other: SegMetricAccumulator) -> SegMetricAccumulator:
        """Add another accumulator's counts (e.g. gathered from another process); returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class counts into {self.num_classes}-class counts")
        self.confusion += other.confusion.to(self.confusion.device)
        return self

    def all_reduce(self, info: DistInfo | None) -> None:
        """Sum the counts over the processes of a ``torchrun`` group (a no-op when not distributed)."""
        all_reduce_sum(self.confusion, info)

    def compute(self, classes: list[str] | None = None) -> SegResult:
        return metrics_from_confusion(self.confusion, classes)


def plot_seg_confusion(result: SegResult, path: str, max_labels: int = 40) -> str:
    """The confusion matrix as a PNG, each row normalised by its label area (rows: true, columns: predicted).

    With more than ``max_labels`` classes (ADE20K's 150) only every n-th class is named on the axes, so that the
    names stay readable; the cells are all drawn. Needs matplotlib (``pip install 'vitkit[viz]'``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = result.confusion.double()
    matrix = matrix / matrix.sum(dim=1, keepdim=True).clamp(min=1)
    k = matrix.shape[0]
    names = result.classes or [str(i) for i in range(k)]
    step = max(1, math.ceil(k / max_labels))
    size = min(max(5.0, 0.3 * min(k, max_labels) + 3), 16)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(matrix.numpy(), cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = list(range(0, k, step))
    fontsize = 8 if step == 1 else 7
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, [names[i] for i in ticks], fontsize=fontsize)
    every = "" if step == 1 else f", every {step}th class named"
    ax.set(
        xlabel="predicted",
        ylabel="true",
        title=f"Pixel confusion, row-normalised (mIoU {100 * result.mIoU:.1f}%{every})",
    )
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_seg_examples(result: SegResult, path: str) -> str:
    """Image, ground truth and prediction side by side for ``result.examples``, coloured with its palette
    (ignored pixels black), with the classes present named under each row. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from vitkit.eval.seg_inference import colorize

    rows = len(result.examples)
    if not rows:
        raise ValueError("the evaluation kept no example images to draw")
    names = result.classes or [str(i) for i in range(len(result.iou))]
    fig, axes = plt.subplots(rows, 3, figsize=(9, 3.1 * rows), squeeze=False)
    for row, (image, label, pred) in enumerate(result.examples):
        ok = label != 255
        accuracy = float((pred[ok] == label[ok]).mean()) if ok.any() else float("nan")
        panels = (image, colorize(label, result.palette), colorize(pred, result.palette))
        titles = ("image", "ground truth", f"prediction ({100 * accuracy:.0f}% of pixels right)")
        for ax, panel, title in zip(axes[row], panels, titles):
            ax.imshow(panel, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        present = [names[i] for i in np.unique(label[ok]) if i < len(names)]
        axes[row][1].text(0.5, -0.06, ", ".join(present), transform=axes[row][1].transAxes, ha="center", va="top",
                          fontsize=7)  # fmt: skip
    fig.suptitle(f"Validation images (mIoU over the set {100 * result.mIoU:.1f}%)", fontsize=11)
    shown = sorted({int(i) for _, label, pred in result.examples for i in np.unique(np.concatenate(
        [label.ravel(), pred.ravel()])) if i < min(len(names), len(result.palette))})  # fmt: skip
    handles = [Patch(facecolor=np.asarray(result.palette[i]) / 255, edgecolor="0.6", label=names[i]) for i in shown]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05 if rows < 3 else 0.03, 1, 1))
    atomic_save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path
