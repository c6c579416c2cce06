"""Gradient (activation) checkpointing for the encoder blocks: recompute each block's activations in the
backward pass instead of storing them, trading about a third more compute for memory that no longer grows
with depth."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class CheckpointedSequential(nn.Sequential):
    """``nn.Sequential`` whose children run under ``torch.utils.checkpoint`` while gradients are recorded.

    Children keep their indices, so state-dict names (``blocks.{i}.*``) do not change.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self:
            x = checkpoint(module, x, use_reentrant=False) if torch.is_grad_enabled() else module(x)
        return x


def enable_grad_checkpointing(model: nn.Module) -> nn.Module:
    """Swap ``model.blocks`` for a checkpointed sequence holding the same blocks; returns the model."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential):
        raise ValueError("gradient checkpointing needs a model whose encoder is an nn.Sequential named 'blocks'")
    if not isinstance(blocks, CheckpointedSequential):
        model.blocks = CheckpointedSequential(*blocks)
    return model
