"""Per-step learning-rate schedules: linear warm-up, then cosine, linear or constant decay.

The schedule is a pure function of the step, so resuming needs only the step count, and every parameter
group follows it scaled by its own ``lr_scale`` (layer-wise decay).
"""

from __future__ import annotations

import math

import torch

from vitkit.train.recipe import ScheduleConfig


class LRSchedule:
    """Learning rate at each optimiser step for ``total_steps`` steps, ``warmup_steps`` of them warm-up.

    Warm-up rises linearly from ``warmup_start_factor * base_lr`` and reaches ``base_lr`` at its last step (no
    step is wasted at rate zero); the decay then goes from ``base_lr`` to ``min_lr`` at the last step (the
    paper's linear decay, or the cosine of Loshchilov & Hutter 2017).
    """

    def __init__(
        self,
        base_lr: float,
        total_steps: int,
        warmup_steps: int = 0,
        decay: str = "cosine",
        min_lr: float = 0.0,
        warmup_start_factor: float = 0.0,
    ) -> None:
        if decay not in ("cosine", "linear", "constant"):
            raise ValueError(f"unknown decay {decay!r}; choose 'cosine', 'linear' or 'constant'")
        if total_steps < 1:
            raise ValueError(f"a schedule needs at least one step, got total_steps={total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"warm-up of {warmup_steps} steps does not fit in {total_steps} steps; shorten the warm-up or "
                "train longer"
            )
        self.base_lr = base_lr
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.decay = decay
        self.min_lr = min_lr
        self.warmup_start_factor = warmup_start_factor
        self.warmup_fraction = 0.0

    @classmethod
    def from_config(cls, cfg: ScheduleConfig, base_lr: float, total_steps: int, steps_per_epoch: int) -> LRSchedule:
        given = [name for name in ("warmup_steps", "warmup_epochs", "warmup_fraction") if getattr(cfg, name)]
        if len(given) > 1:
            raise ValueError(f"set one of schedule.warmup_steps, warmup_epochs and warmup_fraction, not {given}")
        if not 0 <= cfg.warmup_fraction < 1:
            raise ValueError(f"schedule.warmup_fraction must lie in [0, 1), got {cfg.warmup_fraction}")
        warmup = cfg.warmup_steps or round(cfg.warmup_epochs * steps_per_epoch)
        warmup = warmup or round(cfg.warmup_fraction * total_steps)
        sched = cls(base_lr, total_steps, min(warmup, total_steps), cfg.decay, cfg.min_lr, cfg.warmup_start_factor)
        sched.warmup_fraction = cfg.warmup_fraction
        return sched

    def resized(self, total_steps: int) -> LRSchedule:
        """The same schedule over ``total_steps`` (a time budget's count): a fractional warm-up scales with it,
        a warm-up given in steps or epochs is kept (capped at the new length)."""
        warmup = round(self.warmup_fraction * total_steps) if self.warmup_fraction else self.warmup_steps
        sched = LRSchedule(
            self.base_lr, total_steps, min(warmup, total_steps), self.decay, self.min_lr, self.warmup_start_factor
        )
        sched.warmup_fraction = self.warmup_fraction
        return sched

    def __call__(self, step: int) -> float:
        """Learning rate for optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            start = self.warmup_start_factor * self.base_lr
            return start + (self.base_lr - start) * (step + 1) / self.warmup_steps
        if self.decay == "constant":
            return self.base_lr
        span = max(self.total_steps - 1 - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        if self.decay == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            factor = 1.0 - progress
        return self.min_lr + (self.base_lr - self.min_lr) * factor

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's rate for ``step`` (times the group's ``lr_scale``); return the base rate."""
        lr = self(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def state_dict(self) -> dict[str, float | int | str]:
        return {
            "base_lr": self.base_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
            "min_lr": self.min_lr,
            "warmup_start_factor": self.warmup_start_factor,
            "warmup_fraction": self.warmup_fraction,
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> LRSchedule:
        state = dict(state)
        fraction = state.pop("warmup_fraction", 0.0)
        sched = cls(**state)
        sched.warmup_fraction = fraction
        return sched
