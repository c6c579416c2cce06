"""The training engine: one optimiser step at a time, with everything a ViT recipe needs around it.

Per step: ``accum_steps`` micro-batches are augmented on the device (``BatchAugment``), run under bfloat16
autocast and back-propagated (DDP synchronises only on the last one); gradients are clipped by global norm, the
learning rate is set from the schedule, the optimiser steps and the EMA follows. Around the steps: periodic and
end-of-epoch checkpoints, evaluation on the held-out split, metrics, a progress line and a summary per epoch.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.eval.evaluate import evaluate_model
from vitkit.eval.metrics import EvalResult
from vitkit.train import distributed as dist_utils
from vitkit.train.budget import steps_within_budget
from vitkit.train.ema import ModelEma
from vitkit.train.memory import enable_grad_checkpointing
from vitkit.train.optim import build_optimizer
from vitkit.train.progress import ProgressBar
from vitkit.train.recipe import Recipe
from vitkit.train.runlog import RunLog, format_epoch, plot_metrics, read_metrics
from vitkit.train.sampler import ResumableSampler
from vitkit.train.schedule import LRSchedule
from vitkit.train.state import capture_rng, restore_rng, save_checkpoint


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint on disk is left untouched."""


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against integer labels (B,) or soft targets (B, K) from label smoothing / mixup."""
    if targets.ndim == logits.ndim:
        return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    return F.cross_entropy(logits, targets)


@dataclass
class TrainResult:
    model: nn.Module
    ema_model: nn.Module | None
    run_dir: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    final_eval: EvalResult | None = None
    global_step: int = 0
    total_steps: int = 0
    stopped_by_budget: bool = False


class Trainer:
    """Trains ``model`` on ``train_set`` as ``recipe`` says; ``fit()`` runs it (optionally from a checkpoint).

    Datasets yield ``(uint8 image (3, H, W), label)`` as ``vitkit.data.build_dataset`` does; batch-level
    augmentation and normalisation come from ``recipe.data`` through ``vitkit.data.BatchAugment``.
    """

    def __init__(
        self,
        model: nn.Module,
        recipe: Recipe,
        train_set: torch.utils.data.Dataset,
        eval_set: torch.utils.data.Dataset | None = None,
        *,
        classes: list[str] | None = None,
        run_dir: str | Path | None = None,
        device: torch.device | None = None,
        dist: dist_utils.DistInfo | None = None,
        start_time: float | None = None,
    ) -> None:
        from vitkit.data import BatchAugment, create_loader

        t = recipe.train
        self.recipe, self.t = recipe, t
        self.device = device or dist_utils.resolve_device(t.device)
        self.dist = dist or dist_utils.DistInfo()
        self.start_time = start_time if start_time is not None else time.perf_counter()
        self.classes = list(classes or getattr(train_set, "classes", None) or [])
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.is_main = self.dist.is_main
        world = self.dist.world_size
        if t.batch_size % (world * t.accum_steps):
            raise ValueError(
                f"train.batch_size {t.batch_size} must be divisible by processes x accum_steps = "
                f"{world} x {t.accum_steps}; pick a batch size that is a multiple of {world * t.accum_steps}"
            )
        self.micro_batch = t.batch_size // (world * t.accum_steps)

        self.model = model.to(self.device)
        num_classes = _num_classes(model)
        if t.grad_checkpointing:
            enable_grad_checkpointing(self.model)
        self.ema = ModelEma(self.model, t.ema_decay, t.ema_warmup) if t.ema_decay else None
        self.optimizer = build_optimizer(self.model, recipe.optim)
        self.ddp = dist_utils.wrap_ddp(self.model, self.dist, self.device)
        self.forward = torch.compile(self.ddp) if t.compile else self.ddp
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
        self.attention = attention_backend(t.sdpa_backend)

        workers = getattr(recipe.data, "num_workers", 0)
        self.sampler = ResumableSampler(len(train_set), t.seed, True, self.dist.rank, world)
        self.loader = create_loader(
            train_set, self.micro_batch, shuffle=False, num_workers=workers, seed=t.seed, drop_last=True,
            sampler=self.sampler,
        )  # fmt: skip
        self.steps_per_epoch = len(self.sampler) // (self.micro_batch * t.accum_steps)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(train_set)} training images do not fill one batch of {t.batch_size}; lower train.batch_size"
            )
        total = t.epochs * self.steps_per_epoch
        self.max_steps = total if t.max_steps is None else min(t.max_steps, total)
        self.schedule = LRSchedule.from_config(recipe.schedule, recipe.optim.lr, self.max_steps, self.steps_per_epoch)
        self.augment = BatchAugment(recipe.data, num_classes, train=True)
        self.eval_augment = BatchAugment(recipe.data, num_classes, train=False)
        self.eval_loader = None
        if eval_set is not None:
            eval_sampler = ResumableSampler(len(eval_set), t.seed, False, self.dist.rank, world, pad=False)
            self.eval_loader = create_loader(
                eval_set, t.eval_batch_size or self.micro_batch, shuffle=False, num_workers=workers, seed=t.seed,
                drop_last=False, sampler=eval_sampler,
            )  # fmt: skip
        self.log = RunLog(self.run_dir) if self.run_dir is not None and self.is_main else None  # rank 0 logs

        self.global_step = self.epoch = self.step_in_epoch = 0
        self.best_top1 = -1.0
        self.elapsed_before = 0.0
        self.calibrated = t.max_minutes is None
        self.seconds_per_eval = self.last_eval_seconds = 0.0
        self.final_eval: EvalResult | None = None
        self.history: list[dict[str, Any]] = []
        self._loss_sum = torch.zeros(2, dtype=torch.float64, device=self.device)  # [loss sum, steps]
        self._epoch_loss = torch.zeros(2, dtype=torch.float64, device=self.device)

    # ---------------------------------------------------------------------------------------------- state
    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps

    @property
    def num_epochs(self) -> int:
        return -(-self.total_steps // self.steps_per_epoch)

    def wall_time(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start_time

    def _over_budget(self) -> bool:
        """True once the time left would not cover the final evaluation: stop now to end within budget.

        Several processes agree at logging steps only (a collective per step would cost more than it saves).
        """
        final_eval = self.seconds_per_eval if self.eval_loader is not None else 0.0
        over = self.wall_time() + final_eval > self.t.max_minutes * 60
        if not self.dist.enabled:
            return over
        if self.global_step % self.t.log_every_steps:
            return False
        flag = torch.tensor(float(over), device=self.device)
        return bool(dist_utils.all_reduce_sum(flag, self.dist).item())  # all ranks stop at the same step

    def state_dict(self) -> dict[str, Any]:
        rng = capture_rng()
        if self.dist.enabled:  # every rank draws its own augmentations: keep all their generators
            gathered: list[Any] = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        return {
            "model": self.model.state_dict(),
            "model_config": self.model.cfg.to_dict() if hasattr(self.model, "cfg") else None,
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "rng": gathered,
            "progress": {
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
                "best_top1": self.best_top1,
                "elapsed": self.wall_time(),
                "calibrated": self.calibrated,
                "world_size": self.dist.world_size,
                "epoch_loss": self._epoch_loss.tolist(),  # the epoch's summary averages over resumed steps too
            },
            "recipe": self.recipe.to_dict(),
            "classes": self.classes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """Restore everything but the RNG, whose state is returned to be set at the right moment in ``fit``."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule = LRSchedule.from_state_dict(state["schedule"])
        if self.ema is not None:
            if not state.get("ema"):
                raise ValueError(
                    "the checkpoint has no EMA weights but train.ema_decay is set; resume with the same recipe"
                )
            self.ema.load_state_dict(state["ema"])
        p = state["progress"]
        self.epoch, self.step_in_epoch, self.global_step = p["epoch"], p["step_in_epoch"], p["global_step"]
        self.best_top1, self.elapsed_before, self.calibrated = p["best_top1"], p["elapsed"], p["calibrated"]
        self._epoch_loss = torch.tensor(p["epoch_loss"], dtype=torch.float64, device=self.device)
        rngs = state["rng"]
        if len(rngs) != self.dist.world_size:
            print(f"warning: checkpoint from {len(rngs)} process(es), resuming on {self.dist.world_size}: "
                  "random augmentations will differ from an uninterrupted run")  # fmt: skip
            return None
        return rngs[self.dist.rank]

    def save(self, name: str, **extra: Any) -> Path | None:
        state = self.state_dict() if name == "last" else None
        if not self.is_main or self.run_dir is None:
            return None
        if state is None:  # 'best': the evaluated weights and how they scored; not resumable
            model = self.ema.module if self.ema else self.model
            state = {"model": model.state_dict(), "model_config": self.model.cfg.to_dict(), "classes": self.classes}
        return save_checkpoint(self.run_dir / "checkpoints" / f"{name}.pt", **state, **extra)

    # ------------------------------------------------------------------------------------------- stepping
    def _step(self, batches) -> float:
        lr = self.schedule.apply(self.optimizer, self.global_step)
        accum = self.t.accum_steps
        for i in range(accum):
            images, labels = next(batches)
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            x, targets = self.augment(images, labels)  # (B, 3, H, W) float, (B,) or (B, K)
            sync = self.ddp.no_sync() if self.dist.enabled and i < accum - 1 else contextlib.nullcontext()
            with sync:
                with torch.autocast(**self.autocast), self.attention():
                    logits = self.forward(x)
                loss = soft_cross_entropy(logits.float(), targets)
                (loss / accum).backward()
            self._loss_sum[0] += loss.detach() / accum
        self._loss_sum[1] += 1
        if self.recipe.optim.clip_grad_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.optim.clip_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.global_step += 1
        self.step_in_epoch += 1
        return lr

    def _take_loss(self) -> float:
        """Mean loss since the last call over all processes; raises if it is not finite."""
        totals = dist_utils.all_reduce_sum(self._loss_sum.clone(), self.dist)
        self._epoch_loss += totals
        self._loss_sum.zero_()
        loss = (totals[0] / totals[1].clamp(min=1)).item()
        if not math.isfinite(loss):
            last = self.run_dir / "checkpoints" / "last.pt" if self.run_dir else None
            kept = f"the last good checkpoint is {last}" if last and last.exists() else "no checkpoint was written yet"
            raise NonFiniteLossError(
                f"loss became {loss} by step {self.global_step}; stopping. {kept}. Lower optim.lr, set "
                "optim.clip_grad_norm or a longer warm-up, then resume from it or start again"
            )
        return loss

    def _fit_budget(self, seconds_per_step: float, seconds_per_eval: float, seconds_per_epoch_end: float = 0.0) -> None:
        """Lay the schedule out over the steps that fit in ``train.max_minutes`` (see budget.py).

        Called after the calibration steps with estimates, then at each epoch end with measured costs, so the
        run still ends on time when the shared machine gets faster or slower.
        """
        budget = self.t.max_minutes * 60
        left = budget - self.wall_time() - min(5.0, 0.05 * budget)  # kept for the final save and plots
        total = steps_within_budget(
            left, seconds_per_step, seconds_per_eval, self.global_step, self.max_steps, self.steps_per_epoch,
            self.t.eval_every_epochs, seconds_per_epoch_end,
        )  # fmt: skip
        total = int(dist_utils.broadcast_object(total, self.dist))
        first = not self.calibrated
        self.calibrated = True
        if total == self.total_steps:
            return
        s = self.schedule
        self.schedule = s.resized(total)
        if self.is_main and (first or abs(total - s.total_steps) > 0.05 * s.total_steps):
            print(
                f"time budget {self.t.max_minutes:g} min: {seconds_per_step * 1000:.0f} ms/step, "
                f"{seconds_per_eval:.1f} s/eval -> {total} steps ({total / self.steps_per_epoch:.2f} epochs); "
                "schedule laid out over them",
                flush=True,
            )

    @torch.no_grad()
    def _time_eval(self) -> float:
        """Seconds for one full evaluation, from timing a batch (RNG untouched, so runs stay reproducible)."""
        model = (self.ema.module if self.ema else self.model).eval()
        with torch.random.fork_rng(devices=[]):
            images, labels = next(iter(self.eval_loader))
        images = images.to(self.device)
        x, _ = self.eval_augment(images, labels.to(self.device))
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            with torch.autocast(**self.autocast), self.attention():
                model(x)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        self.model.train()
        self.seconds_per_eval = 1.2 * seconds[-1] * len(self.eval_loader)
        return self.seconds_per_eval

    # -------------------------------------------------------------------------------------------- running
    def evaluate(self) -> EvalResult:
        model = self.ema.module if self.ema else self.model
        with self.attention():
            result = evaluate_model(
                model, self.eval_loader, self.eval_augment, device=self.device, precision=self.t.precision,
                dist=self.dist, classes=self.classes, progress=False,
            )  # fmt: skip
        self.model.train()
        return result

    def fit(self, resume: dict[str, Any] | None = None) -> TrainResult:
        """Train to the end of the schedule (or the time budget), starting from ``resume`` when given."""
        t = self.t
        pending_rng = self.load_state_dict(resume) if resume else None
        if resume is None:
            torch.manual_seed(t.seed * 1000 + self.dist.rank)  # per-process augmentation and dropout draws
        if self.log:
            self.log.truncate_after(self.global_step if resume else -1)
        if self.is_main:
            self._print_start(resume)
        if t.eval_at_start and self.global_step == 0 and self.eval_loader is not None:
            self._end_epoch_eval(epoch=0, epoch_seconds=0.0, img_per_s=0.0, lr=self.schedule(0))
        self.model.train()
        stopped = False
        self._first_step, self._timer = self.global_step, None
        spent = [0.0, 0, 0.0, 0]  # training seconds, steps, epoch-end seconds (without eval), epoch ends
        while self.global_step < self.total_steps and not stopped:
            self.sampler.set_epoch(self.epoch, self.step_in_epoch * self.micro_batch * t.accum_steps)
            if pending_rng is not None and self.step_in_epoch == 0:  # same order as an uninterrupted run
                restore_rng(pending_rng)
                pending_rng = None
            batches = iter(self.loader)
            if pending_rng is not None:  # mid-epoch: the uninterrupted run made its iterator before this state
                restore_rng(pending_rng)
                pending_rng = None
            bar = ProgressBar(1, "", t.progress and self.is_main)
            self._label_bar(bar)
            bar.update(self.step_in_epoch)
            epoch_start, epoch_first_step = time.perf_counter(), self.global_step
            self._window = (epoch_start, self.global_step)
            lr = self.schedule(self.global_step)
            if self.step_in_epoch == 0:
                self._epoch_loss.zero_()
            while self.step_in_epoch < self.steps_per_epoch and self.global_step < self.total_steps:
                lr = self._step(batches)
                if not self.calibrated and self._calibration_tick():
                    self._label_bar(bar)
                end = self.step_in_epoch == self.steps_per_epoch or self.global_step == self.total_steps
                if self.global_step % t.log_every_steps == 0 or end:
                    self._log_step(bar, lr)
                every = t.checkpoint_every_steps
                if every and self.global_step % every == 0 and not end:
                    self._take_loss()  # never write weights that came from a non-finite loss
                    self.save("last")
                if t.max_minutes is not None and self._over_budget():
                    stopped = True
                    break
            bar.close()
            self._take_loss()
            seconds, steps = time.perf_counter() - epoch_start, self.global_step - epoch_first_step
            end_start, self.last_eval_seconds = time.perf_counter(), 0.0
            last = stopped or self.global_step >= self.total_steps
            self._end_epoch(seconds, steps * t.batch_size / max(seconds, 1e-9), lr, last)
            spent = [spent[0] + seconds, spent[1] + steps, spent[2] + time.perf_counter() - end_start, spent[3] + 1]
            spent[2] -= self.last_eval_seconds
            if self.calibrated and t.max_minutes is not None and not last and spent[1]:
                # Averages over this process's epochs so far: steady against one noisy epoch.
                self._fit_budget(spent[0] / spent[1], self.seconds_per_eval, spent[2] / spent[3])
        return self._finish(stopped)

    def _label_bar(self, bar: ProgressBar) -> None:
        bar.total = max(1, min(self.steps_per_epoch, self.total_steps - self.epoch * self.steps_per_epoch))
        bar.desc = f"epoch {self.epoch + 1}/{self.num_epochs}"

    def _calibration_tick(self) -> bool:
        """Time the steps after the first few (allocator and kernel warm-up); fit the budget once measured."""
        done = self.global_step - self._first_step
        if done == max(1, min(5, self.t.calibration_steps // 4)):
            self._timer = (self.global_step, time.perf_counter())
        elif self._timer is not None and done >= self.t.calibration_steps:
            per_step = (time.perf_counter() - self._timer[1]) / (self.global_step - self._timer[0])
            self._fit_budget(per_step, self._time_eval() if self.eval_loader is not None else 0.0)
            return True
        return False

    def _log_step(self, bar: ProgressBar, lr: float) -> None:
        now = time.perf_counter()
        img_s = (self.global_step - self._window[1]) * self.t.batch_size / max(now - self._window[0], 1e-9)
        loss = self._take_loss()
        row = {"kind": "step", "step": self.global_step, "epoch": self.epoch + 1, "loss": loss, "lr": lr,
               "img_per_s": img_s, "wall_time": self.wall_time()}  # fmt: skip
        if self.log:
            self.log.log(row)
        bar.update(self.step_in_epoch, loss=loss, lr=lr, **{"img/s": f"{img_s:.0f}"})
        self._window = (now, self.global_step)

    def _end_epoch(self, seconds: float, img_per_s: float, lr: float, last: bool) -> None:
        epoch = self.epoch + 1
        due = self.eval_loader is not None and (epoch % self.t.eval_every_epochs == 0 or last)
        if due:
            self._end_epoch_eval(epoch, seconds, img_per_s, lr)
        else:
            self._log_epoch({"epoch": epoch, "epoch_time": seconds, "img_per_s": img_per_s, "lr": lr})
        self.epoch += 1
        self.step_in_epoch = 0
        self.save("last")

    def _end_epoch_eval(self, epoch: int, epoch_seconds: float, img_per_s: float, lr: float) -> None:
        start = time.perf_counter()
        result = self.evaluate()
        self.last_eval_seconds = self.seconds_per_eval = time.perf_counter() - start
        row = {"epoch": epoch, "epoch_time": epoch_seconds, "img_per_s": img_per_s, "lr": lr, "top1": result.top1,
               "top5": result.top5, "eval_loss": result.loss}  # fmt: skip
        self._log_epoch(row)
        self.final_eval = result
        if result.top1 > self.best_top1:
            self.best_top1 = result.top1
            self.save("best", metrics=result.summary(), step=self.global_step)

    def _log_epoch(self, row: dict[str, Any]) -> None:
        epoch_loss = self._epoch_loss
        train_loss = (epoch_loss[0] / epoch_loss[1]).item() if epoch_loss[1] > 0 else None
        row = {
            "kind": "epoch",
            "step": self.global_step,
            "train_loss": train_loss,
            **row,
            "wall_time": self.wall_time(),
        }
        self.history.append(row)
        if self.log:
            self.log.log(row)
        if self.is_main:
            print(format_epoch(row, self.num_epochs), flush=True)

    def _print_start(self, resume: dict[str, Any] | None) -> None:
        where = f" in {self.run_dir}" if self.run_dir else ""
        if resume:
            print(
                f"resumed at step {self.global_step} (epoch {self.epoch + 1}, step {self.step_in_epoch} of it){where}"
            )
        world = f" x {self.dist.world_size} processes" if self.dist.enabled else ""
        print(
            f"training {self.total_steps} steps ({self.num_epochs} epochs of {self.steps_per_epoch}), batch "
            f"{self.t.batch_size} ({self.micro_batch} x {self.t.accum_steps} accum{world}) on {self.device}{where}",
            flush=True,
        )

    def _finish(self, stopped: bool) -> TrainResult:
        if stopped and self.is_main:
            print(f"stopped by the time budget of {self.t.max_minutes:g} min at step {self.global_step}")
        if self.log:
            self.log.close()
            try:
                plot_metrics(read_metrics(self.log.path), self.run_dir / "plots")
            except ImportError:  # matplotlib is optional: metrics.jsonl holds every figure
                print("note: matplotlib is not installed, so no plots were drawn (pip install 'vitkit[viz]')")
        return TrainResult(
            model=self.model,
            ema_model=self.ema.module if self.ema else None,
            run_dir=self.run_dir,
            history=self.history,
            final_eval=self.final_eval,
            global_step=self.global_step,
            total_steps=self.total_steps,
            stopped_by_budget=stopped,
        )


def attention_backend(name: str):
    """A context-manager factory pinning ``scaled_dot_product_attention`` to one kernel ('auto': no pinning)."""
    if name == "auto":
        return contextlib.nullcontext
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {
        "math": SDPBackend.MATH,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    return lambda: sdpa_kernel(backend[name])


def _num_classes(model: nn.Module) -> int:
    if hasattr(model, "cfg"):
        return model.cfg.num_classes
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head.out_features
    raise ValueError("cannot tell the number of classes: give the model a .cfg or a Linear .head")
