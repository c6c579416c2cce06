"""Checkpoints of a running trainer: what ``checkpoints/last.pt`` (resumable) and ``best.pt`` hold.

A mixin of :class:`~vitkit.train.loop.Trainer`, kept apart so the loop reads on its own. The file format (safe
to read with ``weights_only=True``, written atomically) lives in :mod:`vitkit.train.state`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from vitkit.train.parallel import full_state, load_full_state
from vitkit.train.schedule import LRSchedule
from vitkit.train.state import capture_rng, save_checkpoint
from vitkit.utils.distributed import all_gather_object

log = logging.getLogger("vitkit.train")


class Checkpointing:
    """``save``, ``state_dict`` and ``load_state_dict`` of the trainer (which provides the attributes used)."""

    def save(self, name: str = "last") -> Path | None:
        """Write ``checkpoints/<name>.pt``; after a new best evaluation ``best.pt`` gets the same state (and its
        metrics), so it can be resumed from when ``last.pt`` is damaged."""
        # Every rank builds the state before rank 0 writes it: building it is a collective (the RNG states of all
        # ranks are gathered; with FSDP the full weights too), so a rank that skipped it would hang the others.
        state = self.state_dict()
        best, self._new_best = self._new_best, None
        path = None
        if self.is_main and self.run_dir is not None:
            path = save_checkpoint(self.run_dir / "checkpoints" / f"{name}.pt", **state)
            if best is not None:
                save_checkpoint(self.run_dir / "checkpoints" / "best.pt", **state, **best)
        self._emit("on_checkpoint", name, path)
        return path

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, on every rank (see :meth:`save`)."""
        progress = {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_score": self.best_score,
            "world_size": self.dist.world_size,
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
            "classes": self.classes,
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
        self.best_score = p.get("best_score", p.get("best_top1"))  # best_top1: checkpoints before objectives
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
