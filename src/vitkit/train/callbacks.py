"""What the engine tells the outside world, as callbacks: console lines, the progress bar, metrics files.

The loop calls every callback at the same few points and never prints; a user's callback (a custom logger, an
early stop, a test's simulated crash) is one more object in ``Trainer(callbacks=[...])``. The built-in ones run on
rank 0 only; a user's run on every process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vitkit.train.runlog import RunLog, format_epoch, plot_metrics, read_metrics
from vitkit.utils.progress import ProgressBar

log = logging.getLogger("vitkit.train")


class Callback:
    """Override what you need; ``trainer`` is the running :class:`~vitkit.train.loop.Trainer`."""

    def on_start(self, trainer: Any) -> None:
        """Before the first step (after a resume has restored the state)."""

    def on_epoch_start(self, trainer: Any) -> None:
        """Before the epoch's first step (or the first step after a resume)."""

    def on_step(self, trainer: Any, row: dict[str, Any]) -> None:
        """Every ``train.log_every_steps`` steps: ``row`` holds step, loss, lr, images/s and the objective's logs."""

    def on_epoch(self, trainer: Any, row: dict[str, Any]) -> None:
        """At each epoch's end: ``row`` holds train_loss, timing and, when evaluated, the evaluation's numbers."""

    def on_checkpoint(self, trainer: Any, name: str, path: Path | None) -> None:
        """After ``checkpoints/<name>.pt`` was written (``path`` is None on processes that do not write)."""

    def on_end(self, trainer: Any, result: Any) -> None:
        """After training, with the :class:`~vitkit.train.loop.TrainResult`."""


def _task(trainer: Any) -> Any:
    """The task whose numbers the trainer's evaluations report (None without an evaluator)."""
    evaluator = getattr(trainer, "evaluator", None)
    return evaluator.task if evaluator is not None else None


def default_callbacks(train: Any, run_dir: Path | None) -> list[Callback]:
    """Rank 0's built-in callbacks for a ``TrainConfig``: progress bar, console lines, metrics files."""
    return [ProgressCallback(train.progress), ConsoleLog()] + (
        [MetricsLog(run_dir, train.tensorboard)] if run_dir else []
    )


class ConsoleLog(Callback):
    """The start line and one line per epoch, through ``logging`` (logger ``vitkit.train``)."""

    def on_start(self, trainer: Any) -> None:
        t = trainer
        where = f" in {t.run_dir}" if t.run_dir else ""
        if t.resumed:
            log.info(f"resumed at step {t.global_step} (epoch {t.epoch + 1}, step {t.step_in_epoch} of it){where}")
        world = f" x {t.dist.world_size} processes" if t.dist.enabled else ""
        log.info(
            f"training {t.total_steps} steps ({t.num_epochs} epochs of {t.steps_per_epoch}), batch "
            f"{t.recipe.train.batch_size} ({t.micro_batch} x {t.recipe.train.accum_steps} accum{world}) on "
            f"{t.device} in {t.precision}{where}"
        )

    def on_epoch(self, trainer: Any, row: dict[str, Any]) -> None:
        log.info(format_epoch(row, trainer.num_epochs, _task(trainer)))


class ProgressCallback(Callback):
    """The in-place progress line of the current epoch (stderr)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: ProgressBar | None = None

    def on_epoch_start(self, trainer: Any) -> None:
        self.bar = ProgressBar(1, "", self.enabled)
        self.relabel(trainer)
        self.bar.update(trainer.step_in_epoch)

    def relabel(self, trainer: Any) -> None:
        """Epoch count and length change when a time budget lays the schedule out."""
        if self.bar is not None:
            epoch_steps = trainer.total_steps - trainer.epoch * trainer.steps_per_epoch
            self.bar.total = max(1, min(trainer.steps_per_epoch, epoch_steps))
            self.bar.desc = f"epoch {trainer.epoch + 1}/{trainer.num_epochs}"

    def on_step(self, trainer: Any, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.relabel(trainer)
            values = {k: v for k, v in row.items() if k in ("loss", "lr")}
            self.bar.update(trainer.step_in_epoch, **values, **{"img/s": f"{row['img_per_s']:.0f}"})

    def on_epoch(self, trainer: Any, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsLog(Callback):
    """``metrics.jsonl`` (and TensorBoard with ``tensorboard=True``) in the run folder; plots at the end."""

    def __init__(self, run_dir: Path, tensorboard: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.tensorboard = tensorboard
        self.log: RunLog | None = None

    def on_start(self, trainer: Any) -> None:
        self.log = RunLog(self.run_dir, tensorboard=self.tensorboard)
        self.log.truncate_after(trainer.global_step if trainer.resumed else -1)  # a resume re-does later steps

    def on_step(self, trainer: Any, row: dict[str, Any]) -> None:
        self.log.log(row)

    def on_epoch(self, trainer: Any, row: dict[str, Any]) -> None:
        self.log.log(row)

    def on_end(self, trainer: Any, result: Any) -> None:
        self.log.close()
        try:
            task = _task(trainer)
            percentages = task.percentages if task is not None else ()
            plot_metrics(read_metrics(self.log.path), self.run_dir / "plots", percentages)
        except ImportError:  # matplotlib is optional: metrics.jsonl holds every figure
            log.info("note: matplotlib is not installed, so no plots were drawn (pip install 'vitkit[viz]')")
