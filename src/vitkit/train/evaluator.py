"""The engine's evaluation: the task's evaluation of the trained (or EMA) weights at epoch ends, which of them is
the best so far, and how long one takes (for the time budget). It owns its state: the best score and the last
report."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from vitkit.tasks import EvalContext, Report, Task


class Evaluator:
    """Evaluates a model on ``loader`` as ``task`` does; keeps the best score of its ``best_metric``."""

    def __init__(
        self,
        task: Task,
        loader: Iterable,
        transform: Callable,
        *,
        objective: Any = None,
        device: torch.device | None = None,
        precision: str = "fp32",
        dist: Any = None,
        info: dict[str, Any] | None = None,
        attention: Callable[[], AbstractContextManager] = nullcontext,
    ) -> None:
        self.task, self.loader, self.transform, self.objective = task, loader, transform, objective
        self.device, self.precision, self.attention = device or torch.device("cpu"), precision, attention
        self.context = EvalContext(transform, self.device, precision, dist, dict(info or {}))
        self.best_score: float | None = None
        self.last: Report | None = None

    def evaluate(self, model: nn.Module) -> Report:
        """The task's report on the whole evaluation split (summed over processes)."""
        with self.attention():
            self.last = self.task.evaluate(model, self.loader, self.context, self.objective)
        return self.last

    def is_new_best(self, numbers: dict[str, float]) -> bool:
        """Whether ``numbers`` beat the best so far on the task's metric; if so, they become the best."""
        score, best = numbers[self.task.best_metric], self.best_score
        better = best is None or (score > best if self.task.higher_is_better else score < best)
        if better:
            self.best_score = score
        return better

    @torch.no_grad()
    def estimate_seconds(self, model: nn.Module, clock: Callable[[], float]) -> float:
        """Seconds one full evaluation will take, from timing the task's evaluation of one batch (the RNG
        untouched, so runs stay reproducible); a fifth more for the metrics and the odd batch."""
        with torch.random.fork_rng(devices=[]):
            batch = next(iter(self.loader))
        for _ in range(2):  # the second run is timed: the first warms kernels and the allocator
            start = clock()
            with torch.random.fork_rng(devices=[]), self.attention():
                self.task.evaluate(model, [batch], self.context, self.objective)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        return 1.2 * (clock() - start) * len(self.loader)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state.get("best_score", state.get("best_top1"))  # best_top1: checkpoints before objectives
