"""Fitting a run into a wall-clock budget.

After a few calibration steps the engine estimates the seconds per optimiser step and per evaluation; the
schedule is then laid out over the largest number of steps whose training, evaluations and epoch ends fit in the
time left, so a 30-minute run ends with a fully decayed learning rate instead of being cut off mid-schedule.
The fit is redone at each epoch end with measured costs, since a shared machine's speed drifts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def evaluations_until(total_steps: int, done_steps: int, steps_per_epoch: int, eval_every: int) -> int:
    """Evaluations still to run if training stops at ``total_steps``: one every ``eval_every`` epochs whose end
    lies after ``done_steps``, and always one at the end."""
    last_epoch = -(-total_steps // steps_per_epoch)
    ends = _epoch_ends(total_steps, done_steps, steps_per_epoch)
    return sum(1 for epoch in ends if epoch % eval_every == 0 or epoch == last_epoch)


def _epoch_ends(total_steps: int, done_steps: int, steps_per_epoch: int) -> list[int]:
    """Epochs (1-based) whose end, capped at ``total_steps``, lies after ``done_steps``."""
    last_epoch = -(-total_steps // steps_per_epoch)
    return [e for e in range(1, last_epoch + 1) if min(e * steps_per_epoch, total_steps) > done_steps]


def steps_within_budget(
    seconds_left: float,
    seconds_per_step: float,
    seconds_per_eval: float,
    done_steps: int,
    max_steps: int,
    steps_per_epoch: int,
    eval_every: int = 1,
    seconds_per_epoch_end: float = 0.0,
) -> int:
    """The largest total step count in (done_steps, max_steps] whose remaining cost fits ``seconds_left``.

    Each remaining epoch end costs ``seconds_per_epoch_end`` (checkpoint, logging) plus an evaluation when one is
    due. When the budget (not ``max_steps``) ends the run, it does not open a last epoch that would reach less than
    a quarter of its steps: those few steps would pay a whole evaluation and epoch end for little. Returns
    ``done_steps + 1`` at least, so a run always finishes the step it is in.
    """

    def cost(total: int) -> float:
        evals = evaluations_until(total, done_steps, steps_per_epoch, eval_every)
        ends = len(_epoch_ends(total, done_steps, steps_per_epoch))
        return (total - done_steps) * seconds_per_step + evals * seconds_per_eval + ends * seconds_per_epoch_end

    lo, hi = done_steps + 1, max(max_steps, done_steps + 1)
    if cost(hi) <= seconds_left:
        return hi
    while lo < hi:  # cost grows with the step count: binary search for the last affordable one
        mid = (lo + hi + 1) // 2
        if cost(mid) <= seconds_left:
            lo = mid
        else:
            hi = mid - 1
    stub = lo % steps_per_epoch  # steps of a last, partial epoch
    if stub and 4 * stub < steps_per_epoch and lo - stub > done_steps:
        return lo - stub
    return lo


class Budget:
    """The run's wall-clock budget: elapsed time, calibration and the step count that fits.

    ``clock`` returns seconds (``time.perf_counter`` by default); tests inject a fake one, so no test depends on
    how fast the machine runs. Without ``max_minutes`` the budget only measures time.
    """

    def __init__(
        self,
        max_minutes: float | None,
        calibration_steps: int = 20,
        clock: Callable[[], float] = time.perf_counter,
        start: float | None = None,
    ) -> None:
        self.seconds = None if max_minutes is None else max_minutes * 60
        self.calibration_steps = calibration_steps
        self.clock = clock
        self.start = clock() if start is None else start
        self.elapsed_before = 0.0  # time spent before a resume
        self.calibrated = max_minutes is None
        self.seconds_per_eval = 0.0
        self._timer: tuple[int, float] | None = None
        self._spent = [0.0, 0, 0.0, 0]  # training seconds, steps, epoch-end seconds (without eval), epoch ends

    @property
    def limited(self) -> bool:
        return self.seconds is not None

    def elapsed(self) -> float:
        return self.elapsed_before + self.clock() - self.start

    def exhausted(self, final_eval: bool) -> bool:
        """True once the time left would not cover the final evaluation: stop now to end within budget."""
        reserve = self.seconds_per_eval if final_eval else 0.0
        return self.limited and self.elapsed() + reserve > self.seconds

    def should_stop(self, final_eval: bool, dist: Any = None, device: Any = "cpu", sync_point: bool = True) -> bool:
        """:meth:`exhausted`, agreed by all processes: they compare at ``sync_point`` steps only (a collective per
        step would cost more than it saves), so all ranks stop at the same step."""
        over = self.exhausted(final_eval)
        if dist is None or not dist.enabled:
            return over
        if not sync_point:
            return False
        import torch

        from vitkit.utils.distributed import all_reduce_sum

        return bool(all_reduce_sum(torch.tensor(float(over), device=device), dist).item())

    def calibration_tick(self, done: int) -> float | None:
        """Seconds per step once ``done`` steps (since the start) cover the calibration; None until then.

        The first few steps (allocator and kernel warm-up) are not timed.
        """
        if self.calibrated:
            return None
        if done == max(1, min(5, self.calibration_steps // 4)):
            self._timer = (done, self.clock())
        elif self._timer is not None and done >= self.calibration_steps:
            return (self.clock() - self._timer[1]) / (done - self._timer[0])
        return None

    def record_epoch(self, train_seconds: float, steps: int, end_seconds: float) -> tuple[float, float] | None:
        """Add an epoch's measured costs; returns the running (seconds per step, seconds per epoch end).

        Averages over this process's epochs so far stay steady against one noisy epoch.
        """
        s = self._spent
        self._spent = [s[0] + train_seconds, s[1] + steps, s[2] + end_seconds, s[3] + 1]
        s = self._spent
        return (s[0] / s[1], s[2] / s[3]) if s[1] else None

    def steps_left(self, seconds_per_step: float, done_steps: int, max_steps: int, steps_per_epoch: int,
                   eval_every: int, seconds_per_epoch_end: float = 0.0) -> int:  # fmt: skip
        """The total step count whose remaining cost fits the time left (see :func:`steps_within_budget`)."""
        left = self.seconds - self.elapsed() - min(5.0, 0.05 * self.seconds)  # kept for the final save and plots
        self.calibrated = True
        return steps_within_budget(left, seconds_per_step, self.seconds_per_eval, done_steps, max_steps,
                                   steps_per_epoch, eval_every, seconds_per_epoch_end)  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self.elapsed(), "calibrated": self.calibrated}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.elapsed_before, self.calibrated = state["elapsed"], state["calibrated"]
