"""Masked-image pre-training (MAE, He et al. 2022): images without labels in, the pixels of hidden patches out.

Data as for classification, labels unused (an unlabelled folder is fine); the model is not sized from the data.
Evaluation reports the objective's loss on the held-out split with masks drawn from a fixed seed, so every
evaluation scores the same masks and leaves the training random stream (and with it an exact resume) untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vitkit.data.augment import BatchAugment
from vitkit.data.config import DataConfig
from vitkit.data.datasets import build_dataset
from vitkit.tasks.base import EvalContext, Task
from vitkit.utils.device import autocast_for
from vitkit.utils.distributed import all_reduce_sum

EVAL_SEED = 0


@dataclass
class LossReport:
    """The mean objective loss over an evaluation split."""

    loss: float
    num_samples: int

    def numbers(self) -> dict[str, float]:
        return {"eval_loss": self.loss}

    def summary(self) -> dict[str, Any]:
        return {"eval_loss": self.loss, "num_samples": self.num_samples}

    def to_dict(self) -> dict[str, Any]:
        return self.summary()

    def brief(self) -> dict[str, Any]:
        return self.summary()

    def format(self) -> str:
        return f"reconstruction loss {self.loss:.4f} ({self.num_samples} images, fixed masks)"


class MaskedImageModeling(Task):
    name = "masked_image_modeling"
    objectives = ("masked_reconstruction",)
    best_metric = "eval_loss"
    higher_is_better = False

    def data_config_class(self) -> type:
        return DataConfig

    def dataset(self, data_cfg: DataConfig, split: str, augment: bool) -> Any:
        return build_dataset(data_cfg, split, augment=augment)

    def describe(self, train_set: Any, data_cfg: Any = None) -> dict[str, Any]:
        return {"classes": [str(c) for c in getattr(train_set, "classes", None) or []]}  # kept, never required

    def batch_transform(self, data_cfg: DataConfig, info: Mapping[str, Any], train: bool) -> Callable:
        return BatchAugment(data_cfg, max(len(info.get("classes") or ()), 1), train=train)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable, ctx: EvalContext, objective: Any = None) -> LossReport:
        if objective is None:
            raise ValueError("masked-image evaluation scores the objective's loss; pass the objective")
        was_training = model.training
        model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=ctx.device)  # [loss sum, samples]
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # fixed evaluation masks; training's stream continues as is
            torch.manual_seed(EVAL_SEED)
            for images, targets in loader:
                images, targets = images.to(ctx.device), targets.to(ctx.device)
                x = ctx.transform(images, targets)[0] if ctx.transform is not None else images
                with autocast_for(ctx.precision, ctx.device):
                    loss, _ = objective.loss(model, (x, targets))
                totals += torch.stack([loss.detach().double() * len(x), totals.new_tensor(len(x))])
        model.train(was_training)
        all_reduce_sum(totals, ctx.dist)
        return LossReport((totals[0] / totals[1].clamp(min=1)).item(), int(totals[1].item()))


TASK = MaskedImageModeling()
