"""Image classification: cross-entropy against integer labels or soft targets (Mixup, CutMix, label smoothing).

The model maps images (B, C, H, W) to logits (B, K). The loss runs in float32 outside autocast, so bf16 training
only changes the forward pass, as in the reference recipes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from vitkit.train.objectives.base import Batch, Objective, register_objective


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against integer labels (B,) or soft targets (B, K) from label smoothing / mixup."""
    if targets.ndim == logits.ndim:
        return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    return F.cross_entropy(logits, targets)


@register_objective
@dataclass
class Classification(Objective):
    """``loss = CE(model(x), targets)``."""

    name: ClassVar[str] = "classification"

    def loss(self, model: Callable[..., Any], batch: Batch) -> tuple[torch.Tensor, Mapping[str, Any]]:
        x, targets = batch
        if targets is None:
            raise ValueError("the classification objective needs labels; this data set yields none")
        logits = model(x)  # (B, K)
        with torch.autocast(logits.device.type, enabled=False):
            return soft_cross_entropy(logits.float(), targets), {}
