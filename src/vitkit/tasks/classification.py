"""Image classification: labelled images in, one label per image out (the paper's task, and DeiT's).

Data: an image folder, CIFAR pickles or a CSV list (:class:`vitkit.data.DataConfig`); the model's head is sized
from the training set's class names, which travel in ``cfg.extra["classes"]``. Objectives: cross-entropy
(``classification``) or DeiT's teacher (``distillation``). Evaluation: top-1, top-5, loss, per-class accuracy and
the confusion matrix; predict: the top-k labels of each image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from vitkit.data.augment import BatchAugment
from vitkit.data.config import DataConfig
from vitkit.data.datasets import build_dataset
from vitkit.data.seg_datasets import detect_layout
from vitkit.eval.classification import evaluate_model, write_report
from vitkit.eval.metrics import EvalResult
from vitkit.eval.prediction import class_names, classify_images
from vitkit.tasks.base import EvalContext, Task


def _segmentation_layout(root: Path) -> bool:
    try:
        layout, _ = detect_layout(root)
    except FileNotFoundError:
        return False
    return layout != "folder" or (root / "masks").is_dir()


class Classification(Task):
    name = "classification"
    objectives = ("classification", "distillation")
    best_metric = "top1"
    higher_is_better = True
    percentages = ("top1", "top5")

    def data_config_class(self) -> type:
        return DataConfig

    def dataset(self, data_cfg: DataConfig, split: str, augment: bool) -> Any:
        return build_dataset(data_cfg, split, augment=augment)

    def describe(self, train_set: Any, data_cfg: Any = None) -> dict[str, Any]:
        classes = [str(c) for c in getattr(train_set, "classes", None) or []]
        if not classes:
            raise ValueError("the training set names no classes (dataset.classes); vitkit needs them to size the head")
        return {"classes": classes}

    def eval_info(self, model: nn.Module, dataset: Any, data_name: str) -> dict[str, Any]:
        if Path(data_name).is_dir() and _segmentation_layout(Path(data_name)):
            raise ValueError(
                f"{data_name} is a segmentation set (image/label-map pairs) but the checkpoint is a classifier; "
                "evaluate a segmentation checkpoint on it, or a classifier on an image folder"
            )
        data_classes = [str(c) for c in getattr(dataset, "classes", None) or []]
        heads = model.cfg.num_classes
        if data_classes and len(data_classes) != heads:
            raise ValueError(
                f"the model predicts {heads} classes but {data_name} has {len(data_classes)}; evaluate on the data it "
                "was trained on, or fine-tune it first (vitkit finetune)"
            )
        return {"classes": data_classes or class_names(model)}

    def model_overrides(self, info: Mapping[str, Any]) -> dict[str, Any]:
        return {"num_classes": len(info["classes"]), "extra": {"classes": list(info["classes"])}}

    def batch_transform(self, data_cfg: DataConfig, info: Mapping[str, Any], train: bool) -> Callable:
        return BatchAugment(data_cfg, max(len(info.get("classes") or ()), 1), train=train)

    def evaluate(self, model: nn.Module, loader: Iterable, ctx: EvalContext, objective: Any = None) -> EvalResult:
        return evaluate_model(
            model, loader, ctx.transform, device=ctx.device, precision=ctx.precision, dist=ctx.dist,
            classes=list(ctx.info.get("classes") or []), progress=ctx.progress, reference=ctx.reference,
        )  # fmt: skip

    def write_report(self, report: EvalResult, out_dir: str | Path) -> list[Path]:
        return write_report(report, out_dir)

    def predict(self, model: nn.Module, paths: Sequence[str], **options: Any) -> list[Any]:
        return classify_images(model, paths, **options)

    def output_shape(self, model_cfg: Any, batch: int, image_size: tuple[int, int]) -> tuple[int, ...] | None:
        classes = getattr(model_cfg, "num_classes", 0)
        return (batch, classes) if classes else None


TASK = Classification()
