"""The running record of training losses: sums on the device, read (and checked) only at logging steps.

Reading a number from the device waits for it, so the loss and the objective's logged numbers are summed as
tensors after each step and averaged over processes only when a line is logged, an epoch ends or a checkpoint is
about to be written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vitkit.utils.distributed import DistInfo, all_reduce_sum


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint on disk is left untouched."""


class LossMeter:
    """Loss sums since the last read and over the epoch, plus the objective's extra numbers."""

    def __init__(self, device: torch.device, dist: DistInfo, checkpoint: Path | None = None) -> None:
        self.device, self.dist, self.checkpoint = device, dist, checkpoint  # named when the loss blows up
        self.window = torch.zeros(2, dtype=torch.float64, device=device)  # [loss sum, steps] since the last read
        self.epoch = torch.zeros(2, dtype=torch.float64, device=device)  # the same over the epoch so far
        self.logs: dict[str, torch.Tensor] = {}
        self.log_steps = 0

    def add(self, loss: torch.Tensor, logs: Mapping[str, Any], accum: int) -> None:
        """One micro-batch's loss and logs; a step averages its ``accum`` micro-batches."""
        self.window[0] += loss.detach() / accum
        for key, value in logs.items():
            self.logs[key] = self.logs.get(key, 0.0) + torch.as_tensor(value, device=self.device).double() / accum

    def end_step(self) -> None:
        self.window[1] += 1
        self.log_steps += 1

    def take_loss(self, step: int) -> float:
        """Mean loss since the last call over all processes; raises :class:`NonFiniteLossError` if not finite."""
        totals = all_reduce_sum(self.window.clone(), self.dist)
        self.epoch += totals
        self.window.zero_()
        loss = (totals[0] / totals[1].clamp(min=1)).item()
        if not math.isfinite(loss):
            last = self.checkpoint
            kept = f"the last good checkpoint is {last}" if last and last.exists() else "no checkpoint was written yet"
            raise NonFiniteLossError(
                f"loss became {loss} by step {step}; stopping. {kept}. Lower optim.lr, set optim.clip_grad_norm or a "
                "longer warm-up, then resume from it or start again"
            )
        return loss

    def take_logs(self) -> dict[str, float]:
        """The objective's numbers averaged over the steps since the last call and over processes."""
        keys, steps = sorted(self.logs), max(self.log_steps, 1)
        self.log_steps = 0
        if not keys:
            return {}
        values = all_reduce_sum(torch.stack([self.logs[k] for k in keys]), self.dist) / (steps * self.dist.world_size)
        self.logs = {}
        return dict(zip(keys, values.tolist()))

    def epoch_mean(self) -> float | None:
        return (self.epoch[0] / self.epoch[1]).item() if self.epoch[1] > 0 else None
