"""Semantic segmentation: images and label maps in, a class per pixel out (ViT-Adapter + UperNet, Chen et al. 2023).

Data: image/label-map pairs in the ADE20K, Pascal VOC or plain-folder layout, or the procedural stand-in
``seg_synth`` (:class:`vitkit.data.seg_config.SegDataConfig`); training batches are fixed-size crops ``(uint8
images (B, 3, H, W), int64 labels (B, H, W))``, evaluation takes whole images one at a time at their own size. The
model's head is sized from the data's classes, which travel with its palette and its evaluation settings in
``cfg.extra``. Objective: per-pixel cross-entropy plus the weighted auxiliary term. Evaluation: mIoU, mAcc, aAcc and
per-class IoU summed over the whole set (mmseg's way), and the confusion matrix; predict: the label map, its overlay
and the class shares of each image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitkit.data.augment import normalize
from vitkit.data.seg_config import SegDataConfig
from vitkit.data.seg_datasets import build_seg_dataset
from vitkit.eval.seg_inference import segment
from vitkit.eval.seg_metrics import SegMetricAccumulator, SegResult, plot_seg_confusion, plot_seg_examples
from vitkit.eval.seg_prediction import eval_settings, palette_of, segment_images
from vitkit.tasks.base import EvalContext, Task
from vitkit.utils.device import autocast_for
from vitkit.utils.files import atomic_write_text
from vitkit.utils.progress import ProgressBar


def _pair(value: int | Sequence[int]) -> list[int]:
    return [int(value)] * 2 if isinstance(value, int) else [int(v) for v in value]


EXAMPLES = 4  # validation images drawn beside their ground truth and prediction in the report (examples.png)


class Normalise:
    """The batch transform: uint8 images -> normalised float on their device; label maps pass unchanged."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return normalize(images, self.mean, self.std), labels


class SegmentationTask(Task):
    name = "segmentation"
    objectives = ("segmentation",)
    best_metric = "mIoU"
    higher_is_better = True
    percentages = ("mIoU", "mAcc", "aAcc")

    def data_config_class(self) -> type:
        return SegDataConfig

    def data_config_for(self, model_cfg: Any, **changes: Any) -> SegDataConfig:
        """The data as the checkpoint was evaluated in training (``cfg.extra["eval"]``), normalised as it was."""
        settings = eval_settings(model_cfg)
        fields = dict(
            img_size=tuple(model_cfg.img_size), mean=model_cfg.mean, std=model_cfg.std, eval_mode=settings["mode"],
            eval_crop=tuple(settings["crop"]), eval_stride=tuple(settings["stride"]), eval_scale=settings["scale"],
            eval_size_divisor=settings["size_divisor"],
        )  # fmt: skip
        changes = {k: v for k, v in changes.items() if v is not None}
        return SegDataConfig(**{**fields, **changes})

    def dataset(self, data_cfg: SegDataConfig, split: str, augment: bool) -> Any:
        return build_seg_dataset(data_cfg, split, augment=augment)

    def describe(self, train_set: Any, data_cfg: SegDataConfig | None = None) -> dict[str, Any]:
        """Class names, palette, and how the data is evaluated (the checkpoint keeps it for eval and predict)."""
        classes = [str(c) for c in getattr(train_set, "classes", None) or []]
        if not classes:
            raise ValueError("the segmentation set names no classes; give the folder a classes.json (see docs)")
        palette = [list(map(int, rgb)) for rgb in getattr(train_set, "palette", None) or []]
        info: dict[str, Any] = {"classes": classes, "palette": palette}
        if data_cfg is not None:
            scale = data_cfg.eval_scale
            info["eval"] = {"mode": data_cfg.eval_mode, "crop": _pair(data_cfg.eval_crop),
                            "stride": _pair(data_cfg.eval_stride), "size_divisor": data_cfg.eval_size_divisor,
                            "scale": list(scale) if isinstance(scale, (list, tuple)) else scale}  # fmt: skip
        return info

    def model_overrides(self, info: Mapping[str, Any]) -> dict[str, Any]:
        extra = {"classes": list(info["classes"])}
        if info.get("palette"):
            extra["palette"] = [list(rgb) for rgb in info["palette"]]
        if info.get("eval"):
            extra["eval"] = dict(info["eval"])
        return {"num_classes": len(info["classes"]), "extra": extra}

    def batch_transform(self, data_cfg: SegDataConfig, info: Mapping[str, Any], train: bool) -> Callable:
        return Normalise(data_cfg.mean, data_cfg.std)

    def eval_batch_size(self, requested: int) -> int:
        return 1  # whole images of their own sizes

    def eval_info(self, model: nn.Module, dataset: Any, data_name: str) -> dict[str, Any]:
        classes = [str(c) for c in getattr(dataset, "classes", None) or []]
        heads = model.cfg.num_classes
        if classes and len(classes) != heads:
            raise ValueError(
                f"the model segments {heads} classes but {data_name} has {len(classes)}; evaluate on the data it was "
                "trained on, or fine-tune it first (vitkit finetune)"
            )
        return {"classes": classes or [str(c) for c in model.cfg.extra.get("classes") or range(heads)],
                "eval": eval_settings(model.cfg)}  # fmt: skip

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable, ctx: EvalContext, objective: Any = None) -> SegResult:
        was_training = model.training
        model.eval()
        settings = dict(ctx.info.get("eval") or eval_settings(model.cfg))
        classes = list(ctx.info.get("classes") or [])
        ignore = getattr(model.cfg, "ignore_index", 255)
        acc = SegMetricAccumulator(model.cfg.num_classes, ignore, device=ctx.device)
        total = len(loader) if hasattr(loader, "__len__") else 0
        bar = ProgressBar(total, "eval", enabled=ctx.progress and total > 1)
        examples: list = []
        for i, (images, labels) in enumerate(loader):
            images, labels = images.to(ctx.device), labels.to(ctx.device)
            x = ctx.transform(images, labels)[0] if ctx.transform is not None else images.float()
            with autocast_for(ctx.precision, ctx.device):
                pred = segment(model, x, settings["mode"], settings["crop"], settings["stride"],
                               out_size=tuple(labels.shape[-2:]))  # fmt: skip
            acc.update(pred, labels)
            for image, label, p in zip(images, labels, pred):
                if len(examples) < EXAMPLES:  # kept for the report's picture
                    examples.append((image.permute(1, 2, 0).cpu().numpy(), label.cpu().numpy(), p.cpu().numpy()))
            bar.update(i + 1)
        bar.close()
        model.train(was_training)
        acc.all_reduce(ctx.dist)
        result = acc.compute(classes)
        result.examples = examples
        result.palette = [tuple(c) for c in ctx.info.get("palette") or palette_of(model.cfg)]
        return result

    def write_report(self, report: SegResult, out_dir: str | Path) -> list[Path]:
        import json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [atomic_write_text(json.dumps(report.to_dict(), indent=1), out / "metrics.json")]
        written.append(Path(plot_seg_confusion(report, str(out / "confusion.png"))))
        if report.examples:
            written.append(Path(plot_seg_examples(report, str(out / "examples.png"))))
        return written

    def predict(self, model: nn.Module, paths: Sequence[str], **options: Any) -> list[Any]:
        return segment_images(model, paths, **options)

    def output_shape(self, model_cfg: Any, batch: int, image_size: tuple[int, int]) -> tuple[int, ...] | None:
        return (batch, model_cfg.num_classes, *image_size)


TASK = SegmentationTask()
