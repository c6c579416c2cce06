"""The training loop: one optimiser step at a time, for any model, objective and task.

Per step: ``accum_steps`` micro-batches go through the task's batch transform on the device, are passed with the
model to ``objective.loss`` under the recipe's autocast and back-propagated (gradients synchronise on the last one
only); gradients are clipped by global norm, the learning rate is set from the schedule, the optimiser steps and
the EMA follows. Around the steps: the time budget, periodic and end-of-epoch checkpoints (a
:class:`~vitkit.train.checkpointer.Checkpointer`), evaluation (an :class:`~vitkit.train.evaluator.Evaluator`) and
callbacks for every line, bar and metrics file. The loop reads nothing about the task or the model beyond the
model's own method set; ``train_model`` (:mod:`vitkit.train.run`) builds the parts and hands them in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitkit.train.budget import Budget
from vitkit.train.callbacks import Callback, default_callbacks
from vitkit.train.checkpointer import Checkpointer
from vitkit.train.ema import ModelEma
from vitkit.train.evaluator import Evaluator
from vitkit.train.loaders import micro_batch_size, resumable_sampler, steps_per_epoch
from vitkit.train.memory import enable_grad_checkpointing
from vitkit.train.meter import LossMeter, NonFiniteLossError
from vitkit.train.objectives import Objective, soft_cross_entropy
from vitkit.train.optim import build_optimizer
from vitkit.train.parallel import attention_backend, full_state, load_full_state, no_grad_sync, reshard, wrap_model
from vitkit.train.recipe import Recipe
from vitkit.train.schedule import LRSchedule
from vitkit.train.state import capture_rng, restore_rng
from vitkit.utils.device import autocast_for, resolve_device, resolve_precision
from vitkit.utils.distributed import DistInfo, all_gather_object, broadcast_object

log = logging.getLogger("vitkit.train")
__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "attention_backend", "soft_cross_entropy"]


@dataclass
class TrainResult:
    model: nn.Module
    ema_model: nn.Module | None
    run_dir: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    final_eval: Any = None  # the task's report of the last evaluation (an EvalResult for classification)
    global_step: int = 0
    total_steps: int = 0
    stopped_by_budget: bool = False


class Trainer:
    """Trains ``model`` with ``objective`` as ``recipe`` says; ``fit()`` runs it.

    ``transform`` is the task's training batch transform (uint8 loader batches -> model input and targets);
    ``evaluator`` (optional) evaluates at epoch ends; ``checkpointer`` (optional) writes the training states.
    ``clock`` (seconds) drives the time budget; ``checkpoint_meta`` is stored in every checkpoint beside the
    weights (``model_config``, ``model_family``, so ``load_pretrained`` can rebuild the model); ``info`` is the
    data's description (class names) that checkpoints record.
    """

    def __init__(
        self,
        model: nn.Module,
        recipe: Recipe,
        train_loader: Iterable,
        transform: Callable,
        objective: Objective,
        *,
        evaluator: Evaluator | None = None,
        checkpointer: Checkpointer | None = None,
        info: dict[str, Any] | None = None,
        run_dir: str | Path | None = None,
        device: torch.device | None = None,
        dist: DistInfo | None = None,
        clock: Callable[[], float] = time.perf_counter,
        start_time: float | None = None,
        callbacks: Iterable[Callback] = (),
        checkpoint_meta: dict[str, Any] | None = None,
    ) -> None:
        t = self.t = recipe.train
        self.recipe, self.device, self.dist = recipe, device or resolve_device(t.device), dist or DistInfo()
        self.is_main, self.info = self.dist.is_main, dict(info or {})
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.budget = Budget(t.max_minutes, t.calibration_steps, clock, start_time)
        self.loader, self.sampler, self.transform = train_loader, resumable_sampler(train_loader), transform
        self.evaluator = evaluator
        self.checkpointer = checkpointer or Checkpointer(self.run_dir, self.is_main, t.keep_checkpoints)
        self.micro_batch = micro_batch_size(recipe, self.dist.world_size)
        self.steps_per_epoch = steps_per_epoch(self.sampler, self.micro_batch, recipe)
        self.model, self.objective = model.to(self.device), objective
        if t.grad_checkpointing:
            enable_grad_checkpointing(model)
        self.objective.setup(self.model, self.device)
        if t.ema_decay and t.parallel == "fsdp" and self.dist.enabled:
            raise ValueError("train.ema_decay is not supported with train.parallel: fsdp yet; set one of them off")
        self.ema = ModelEma(self.model, t.ema_decay, t.ema_warmup) if t.ema_decay else None
        self.wrapped = wrap_model(self.model, self.dist, self.device, t.parallel)  # fsdp shards before the optimiser
        self.optimizer = build_optimizer(self.model, recipe.optim)
        self.forward = torch.compile(self.wrapped) if t.compile else self.wrapped
        self.precision = resolve_precision(t.precision, self.device)
        self.attention = attention_backend(t.sdpa_backend)
        total = t.epochs * self.steps_per_epoch
        self.max_steps = total if t.max_steps is None else min(t.max_steps, total)
        self.schedule = LRSchedule.from_config(recipe.schedule, recipe.optim.lr, self.max_steps, self.steps_per_epoch)
        self.callbacks = (default_callbacks(t, self.run_dir) if self.is_main else []) + list(callbacks)
        self.checkpoint_meta = dict(checkpoint_meta or {})
        self.global_step = self.epoch = self.step_in_epoch = 0
        self.resumed, self.history = False, []
        self._pending_best: dict[str, Any] | None = None  # the next save also writes best.pt
        self.meter = LossMeter(self.device, self.dist, self.checkpointer.last)

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps

    @property
    def num_epochs(self) -> int:
        return -(-self.total_steps // self.steps_per_epoch)

    @property
    def evaluated_model(self) -> nn.Module:
        """The weights evaluation and export use: the EMA when kept."""
        return self.ema.module if self.ema else self.model

    # -------------------------------------------------------------------------------------------- running
    def fit(self, resume: dict[str, Any] | None = None) -> TrainResult:
        """Train to the end of the schedule (or the time budget), starting from checkpoint ``resume`` when given."""
        pending_rng = self._begin(resume)
        stopped, has_eval = False, self.evaluator is not None
        while self.global_step < self.total_steps and not stopped:
            batches = self._start_epoch(pending_rng)
            pending_rng, start, first = None, self.budget.clock(), self.global_step
            lr = self.schedule(self.global_step)
            while self.step_in_epoch < self.steps_per_epoch and self.global_step < self.total_steps:
                lr = self._step(batches)
                self._after_step(lr)
                sync = self.global_step % self.t.log_every_steps == 0
                stopped = self.budget.limited and self.budget.should_stop(has_eval, self.dist, self.device, sync)
                if stopped:
                    break
            self._end_epoch(start, first, lr, last=stopped or self.global_step >= self.total_steps)
        return self._finish(stopped)

    def _begin(self, resume: dict[str, Any] | None) -> dict[str, Any] | None:
        pending_rng = self.load_state_dict(resume) if resume else None
        self.resumed = resume is not None
        if resume is None:
            torch.manual_seed(self.t.seed * 1000 + self.dist.rank)  # per-process augmentation and dropout draws
        self._emit("on_start")
        if self.t.eval_at_start and self.global_step == 0 and self.evaluator is not None:
            self._evaluate({"epoch": 0, "epoch_time": 0.0, "img_per_s": 0.0, "lr": self.schedule(0)})
            self.save()
        self.model.train()
        self._first_step = self.global_step
        return pending_rng

    def _start_epoch(self, pending_rng: dict[str, Any] | None) -> Iterator:
        self.sampler.set_epoch(self.epoch, self.step_in_epoch * self.micro_batch * self.t.accum_steps)
        if pending_rng is not None and self.step_in_epoch == 0:  # same order as an uninterrupted run
            restore_rng(pending_rng)
            pending_rng = None
        batches = iter(self.loader)
        if pending_rng is not None:  # mid-epoch: the uninterrupted run made its iterator before this state
            restore_rng(pending_rng)
        self._window = (self.budget.clock(), self.global_step)
        if self.step_in_epoch == 0:
            self.meter.epoch.zero_()
        self._emit("on_epoch_start")
        return batches

    def _step(self, batches: Iterator) -> float:
        lr = self.schedule.apply(self.optimizer, self.global_step)
        accum = self.t.accum_steps
        for i in range(accum):
            images, targets = next(batches)
            images = images.to(self.device, non_blocking=True)
            x, targets = self.transform(images, targets.to(self.device, non_blocking=True))
            with no_grad_sync(self.wrapped, skip=self.dist.enabled and i < accum - 1):
                with autocast_for(self.precision, self.device), self.attention():
                    loss, logs = self.objective.loss(self.forward, (x, targets))
                (loss / accum).backward()
            self.meter.add(loss, logs, accum)
        self.meter.end_step()
        if self.recipe.optim.clip_grad_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.optim.clip_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.global_step += 1
        self.step_in_epoch += 1
        return lr

    def _after_step(self, lr: float) -> None:
        per_step = self.budget.calibration_tick(self.global_step - self._first_step)
        if per_step is not None:
            if self.evaluator is not None:
                self.budget.seconds_per_eval = self.evaluator.estimate_seconds(self.evaluated_model, self.budget.clock)
                reshard(self.model)
            self._fit_budget(per_step)
        end = self.step_in_epoch == self.steps_per_epoch or self.global_step == self.total_steps
        if self.global_step % self.t.log_every_steps == 0 or end:
            now = self.budget.clock()
            img_s = (self.global_step - self._window[1]) * self.t.batch_size / max(now - self._window[0], 1e-9)
            row = {
                "kind": "step",
                "step": self.global_step,
                "epoch": self.epoch + 1,
                "loss": self.meter.take_loss(self.global_step),
                "lr": lr,
                "img_per_s": img_s,
                "wall_time": self.budget.elapsed(),
                **self.meter.take_logs(),
            }
            self._emit("on_step", row)
            self._window = (now, self.global_step)
        every = self.t.checkpoint_every_steps
        if every and self.global_step % every == 0 and not end:
            self.meter.take_loss(self.global_step)  # never write weights that came from a non-finite loss
            self.save("last")

    def _end_epoch(self, start: float, first_step: int, lr: float, last: bool) -> None:
        self.meter.take_loss(self.global_step)
        seconds, steps = self.budget.clock() - start, self.global_step - first_step
        end_start, eval_seconds = self.budget.clock(), 0.0
        img_s = steps * self.t.batch_size / max(seconds, 1e-9)
        row = {"epoch": self.epoch + 1, "epoch_time": seconds, "img_per_s": img_s, "lr": lr}
        if self.evaluator is not None and ((self.epoch + 1) % self.t.eval_every_epochs == 0 or last):
            eval_seconds = self._evaluate(row)
        else:
            self._log_epoch(row)
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self.save("last")
        costs = self.budget.record_epoch(seconds, steps, self.budget.clock() - end_start - eval_seconds)
        if self.budget.calibrated and self.budget.limited and not last and costs:
            self._fit_budget(*costs)

    def _evaluate(self, row: dict[str, Any]) -> float:
        """Evaluate, log the epoch with the numbers and mark a new best for ``best.pt``; returns the seconds."""
        start = self.budget.clock()
        report = self.evaluator.evaluate(self.evaluated_model)
        reshard(self.model)
        self.model.train()
        seconds = self.budget.seconds_per_eval = self.budget.clock() - start
        numbers = report.numbers()
        self._log_epoch({**row, **numbers})
        if self.evaluator.is_new_best(numbers):
            self._pending_best = {"metrics": report.summary(), "step": self.global_step}
        return seconds

    def _finish(self, stopped: bool) -> TrainResult:
        if stopped and self.is_main:
            log.info(f"stopped by the time budget of {self.t.max_minutes:g} min at step {self.global_step}")
        ema = self.ema.module if self.ema else None
        final = self.evaluator.last if self.evaluator is not None else None
        result = TrainResult(self.model, ema, self.run_dir, self.history, final, self.global_step, self.total_steps,
                             stopped)  # fmt: skip
        self._emit("on_end", result)
        return result

    # ---------------------------------------------------------------------------------------- checkpoints
    def save(self, name: str = "last") -> Path | None:
        """Write ``checkpoints/<name>.pt`` (and ``best.pt`` after a new best evaluation). Every process builds
        the state (a collective: the RNG states of all ranks are gathered; with FSDP the full weights too), so a
        rank that skipped it would hang the others; only the main process writes."""
        state = self.state_dict()
        best, self._pending_best = self._pending_best, None
        path = self.checkpointer.save(state, name, best)
        self._emit("on_checkpoint", name, path)
        return path

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, on every rank (see :meth:`save`)."""
        progress = {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "world_size": self.dist.world_size,
            **(self.evaluator.state_dict() if self.evaluator is not None else {}),
            **self.budget.state_dict(),
            "epoch_loss": self.meter.epoch.tolist(),
        }  # the epoch summary averages over resumed steps too
        weights, optim = full_state(self.model, self.optimizer)  # a collective when the model is sharded
        return {
            "model": weights,
            "model_config": None,
            **self.checkpoint_meta,
            "optimizer": optim,
            "schedule": self.schedule.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "objective": self.objective.state_dict(),
            "rng": all_gather_object(capture_rng(), self.dist),  # every rank draws its own augmentations
            "progress": progress,
            "recipe": self.recipe.to_dict(),
            "classes": list(self.info.get("classes") or []),
        }

    def load_state_dict(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """Restore everything but the RNG, whose state is returned to be set at the right moment in ``fit``."""
        load_full_state(self.model, self.optimizer, state["model"], state["optimizer"])
        self.schedule = LRSchedule.from_state_dict(state["schedule"])
        self.objective.load_state_dict(state.get("objective") or {})
        if self.ema is not None:
            if not state.get("ema"):
                raise ValueError(
                    "the checkpoint has no EMA weights but train.ema_decay is set; resume with the same recipe"
                )
            self.ema.load_state_dict(state["ema"])
        p = state["progress"]
        self.epoch, self.step_in_epoch, self.global_step = p["epoch"], p["step_in_epoch"], p["global_step"]
        if self.evaluator is not None:
            self.evaluator.load_state_dict(p)
        self.budget.load_state_dict(p)
        self.meter.epoch = torch.tensor(p["epoch_loss"], dtype=torch.float64, device=self.device)
        rngs = state["rng"]
        if len(rngs) != self.dist.world_size:
            log.warning(
                f"warning: checkpoint from {len(rngs)} process(es), resuming on {self.dist.world_size}: "
                "random augmentations will differ from an uninterrupted run"
            )
            return None
        return rngs[self.dist.rank]

    # ---------------------------------------------------------------------------------------- bookkeeping
    def _emit(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    def _fit_budget(self, seconds_per_step: float, seconds_per_epoch_end: float = 0.0) -> None:
        """Lay the schedule out over the steps that fit in ``train.max_minutes``: after calibration with estimates,
        then at each epoch end with measured costs, so the run ends on time when the machine's speed drifts."""
        first = not self.budget.calibrated
        every = self.t.eval_every_epochs if self.evaluator is not None else 0
        layout = (self.global_step, self.max_steps, self.steps_per_epoch, max(every, 1))
        total = int(
            broadcast_object(self.budget.steps_left(seconds_per_step, *layout, seconds_per_epoch_end), self.dist)
        )
        if total == self.total_steps:
            return
        old, self.schedule = self.schedule.total_steps, self.schedule.resized(total)
        if self.is_main and (first or abs(total - old) > 0.05 * old):
            log.info(
                f"time budget {self.t.max_minutes:g} min: {seconds_per_step * 1000:.0f} ms/step, "
                f"{self.budget.seconds_per_eval:.1f} s/eval -> {total} steps "
                f"({total / self.steps_per_epoch:.2f} epochs); schedule laid out over them"
            )

    def _log_epoch(self, row: dict[str, Any]) -> None:
        head = {"kind": "epoch", "step": self.global_step, "train_loss": self.meter.epoch_mean()}
        row = {**head, **row, "wall_time": self.budget.elapsed()}
        self.history.append(row)
        self._emit("on_epoch", row)

    def evaluate(self) -> Any:
        """The task's evaluation of the evaluated weights (the EMA when kept) on the evaluation loader."""
        if self.evaluator is None:
            raise ValueError("this trainer has no evaluator (train.eval_every_epochs: 0, or no evaluation split)")
        report = self.evaluator.evaluate(self.evaluated_model)
        reshard(self.model)
        self.model.train()
        return report
