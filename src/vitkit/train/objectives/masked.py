"""Masked reconstruction (MAE, He et al. 2022): hide patches, reconstruct their pixels; labels are not used.

The model is a :class:`~vitkit.models.mae.MaskedAutoencoder` (or anything whose ``forward(x, mask_ratio=...)``
returns ``(loss, pred, mask)``); the loss is its masked-patch MSE. Evaluation reports that loss on the held-out
split with masks drawn from a fixed seed, so every evaluation scores the same masks and leaves the training
random stream (and with it an exact resume) untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from vitkit.config.mae import check_mask_ratio
from vitkit.train.objectives.base import Batch, Objective, register_objective

EVAL_SEED = 0


@register_objective
@dataclass
class MaskedReconstruction(Objective):
    """``loss = mean over hidden patches of |pred - target|^2`` (the task evaluates it with fixed masks)."""

    name: ClassVar[str] = "masked_reconstruction"

    mask_ratio: float | None = None  # share of patches hidden; None: the model's own (0.75 in the paper)

    def __post_init__(self) -> None:
        if self.mask_ratio is not None:
            self.mask_ratio = check_mask_ratio(float(self.mask_ratio))

    def loss(self, model: Callable[..., Any], batch: Batch) -> tuple[torch.Tensor, Mapping[str, Any]]:
        x, _ = batch  # labels, if the data has them, are not used
        loss, _, _ = model(x, mask_ratio=self.mask_ratio)  # (loss, pred (B, N, P*P*C), mask (B, N))
        return loss.float(), {}  # the engine logs it as `loss` (train) and `eval_loss` (evaluation)
