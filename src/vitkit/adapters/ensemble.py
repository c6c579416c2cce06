"""Several adapter sets on one frozen backbone, combined by averaging their class probabilities.

One set per domain or per attack type costs a few megabytes each; the backbone is held once and each member's
adapter and head tensors are copied in before its forward pass.
"""

from __future__ import annotations

import torch
from torch import nn


class AdapterEnsemble(nn.Module):
    """``forward`` returns the log of the members' mean probability, so ``softmax`` of it is that mean and its
    ``argmax`` the ensemble's decision (evaluation code that expects logits works unchanged)."""

    def __init__(self, model: nn.Module, members: list[dict[str, torch.Tensor]]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an adapter ensemble needs at least one adapter set")
        keys = [sorted(m) for m in members]
        if any(k != keys[0] for k in keys):
            raise ValueError("the adapter sets differ in structure; ensemble sets trained with the same adapter config")
        self.model = model
        self.members = members
        self.cfg = getattr(model, "cfg", None)

    @torch.no_grad()
    def _use(self, index: int) -> None:
        params = dict(self.model.named_parameters())
        for name, value in self.members[index].items():
            params[name].copy_(value)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, K) log mean probability."""
        total = None
        for i in range(len(self.members)):
            self._use(i)
            probs = self.model(x).float().softmax(dim=-1)
            total = probs if total is None else total + probs
        return (total / len(self.members)).log()
