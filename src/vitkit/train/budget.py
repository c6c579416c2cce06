"""Fitting a run into a wall-clock budget.

After a few calibration steps the engine estimates the seconds per optimiser step and per evaluation; the
schedule is then laid out over the largest number of steps whose training, evaluations and epoch ends fit in the
time left, so a 30-minute run ends with a fully decayed learning rate instead of being cut off mid-schedule.
The fit is redone at each epoch end with measured costs, since a shared machine's speed drifts.
"""

from __future__ import annotations


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
    due. Returns ``done_steps + 1`` at least, so a run always finishes the step it is in.
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
    return lo
