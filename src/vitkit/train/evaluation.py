"""The engine's evaluation: the objective's evaluation at epoch ends (keeping the best), the numbers a metrics row
gets from it, and how long one takes (for the time budget)."""

from __future__ import annotations

from typing import Any

import torch

from vitkit.train.objectives import EvalContext
from vitkit.train.parallel import reshard
from vitkit.utils.device import autocast_for


def eval_numbers(result: Any) -> dict[str, float]:
    """An evaluation's numbers for the metrics rows: top1/top5/eval_loss of an EvalResult, or the dict itself."""
    if hasattr(result, "top1"):
        return {"top1": result.top1, "top5": result.top5, "eval_loss": result.loss}
    return dict(result)


@torch.no_grad()
def time_evaluation(trainer: Any) -> float:
    """Seconds one full evaluation will take, from timing a batch (RNG untouched, so runs stay reproducible)."""
    model = (trainer.ema.module if trainer.ema else trainer.model).eval()
    with torch.random.fork_rng(devices=[]):
        images, labels = next(iter(trainer.eval_loader))
    x, _ = trainer.eval_augment(images.to(trainer.device), labels.to(trainer.device))
    clock = trainer.budget.clock
    for _ in range(2):  # the second run is timed: the first warms kernels and the allocator
        start = clock()
        with autocast_for(trainer.precision, trainer.device), trainer.attention():
            model(x)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
    reshard(trainer.model)
    trainer.model.train()
    return 1.2 * (clock() - start) * len(trainer.eval_loader)


def evaluate(trainer: Any) -> Any:
    """The objective's evaluation of the evaluated weights (the EMA when kept) on the evaluation loader."""
    t = trainer
    ctx = EvalContext(t.eval_augment, t.device, t.precision, t.dist, t.classes)
    with t.attention():
        result = t.objective.evaluate(t.ema.module if t.ema else t.model, t.eval_loader, ctx)
    reshard(t.model)
    t.model.train()
    return result


def evaluate_epoch(trainer: Any, row: dict[str, Any]) -> float:
    """Evaluate, log the epoch with the numbers and mark a new best for ``best.pt``; returns the seconds taken."""
    t, objective = trainer, trainer.objective
    start = t.budget.clock()
    result = t.final_eval = evaluate(t)
    seconds = t.budget.seconds_per_eval = t.budget.clock() - start
    numbers = eval_numbers(result)
    t._log_epoch({**row, **numbers})
    score, best = numbers[objective.best_metric], t.best_score
    if best is None or (score > best if objective.higher_is_better else score < best):
        t.best_score = score
        summary = result.summary() if hasattr(result, "summary") else numbers
        t._new_best = {"metrics": summary, "step": t.global_step}  # written with the next save
    return seconds
