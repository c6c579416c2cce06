"""Semantic segmentation: per-pixel cross-entropy with an ignored label, plus the auxiliary head's, weighted (the
ADE20K UperNet configs: 0.4). The model answers ``model(x, aux=True) -> (logits, aux logits)``, both (B, K, H, W)
at the label map's size; a model without an auxiliary head returns logits alone and only the main term counts.
The loss runs in float32 outside autocast."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.train.objectives.base import Batch, Objective, register_objective


@register_objective
@dataclass
class Segmentation(Objective):
    """``loss = CE(logits, labels) + aux_weight * CE(aux logits, labels)``, ``ignore_index`` pixels left out."""

    name: ClassVar[str] = "segmentation"

    aux_weight: float = 0.4
    ignore_index: int = 255

    def __post_init__(self) -> None:
        if float(self.aux_weight) < 0:
            raise ValueError(f"objective.aux_weight must be >= 0, got {self.aux_weight}; the UperNet configs use 0.4")
        self._ask_aux = False

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """A model whose forward takes ``aux`` (a segmentor) is asked for its auxiliary logits too."""
        self._ask_aux = self.aux_weight > 0 and "aux" in inspect.signature(model.forward).parameters

    def loss(self, model: Callable[..., Any], batch: Batch) -> tuple[torch.Tensor, Mapping[str, Any]]:
        x, labels = batch
        if labels is None or labels.ndim != 3:
            raise ValueError("the segmentation objective needs (B, H, W) label maps; this data yields none")
        out = model(x, aux=True) if self._ask_aux else model(x)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        with torch.autocast(logits.device.type, enabled=False):
            main = F.cross_entropy(logits.float(), labels, ignore_index=self.ignore_index)
            if aux is None:
                return main, {}
            extra = F.cross_entropy(aux.float(), labels, ignore_index=self.ignore_index)
            return main + self.aux_weight * extra, {"decode_loss": main.detach(), "aux_loss": extra.detach()}
