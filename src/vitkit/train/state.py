"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the model, optimiser, schedule, EMA, every random-number generator and the position in the
epoch. Its content is tensors, dicts, lists, numbers and strings only, so ``torch.load(weights_only=True)``
reads it without running pickled code. Files are written to a temporary name and renamed, so a run killed
while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import logging
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitkit.utils.files import atomic_write

log = logging.getLogger("vitkit.train")
FORMAT = "vitkit.train_state"
VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename onto ``path``."""
    return atomic_write(path, lambda f: torch.save(obj, f))


# ----------------------------------------------------------------------------------------------------- RNG
def capture_rng() -> dict[str, Any]:
    """States of Python's, NumPy's, torch's CPU and every CUDA generator, as loadable plain data."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, np_gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | Path, **content: Any) -> Path:
    """Write a training checkpoint (``model``, ``optimizer``, ``schedule``, ``ema``, ``rng``, ``progress``, ...)."""
    return atomic_save({"format": FORMAT, "version": VERSION, **content}, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint written by :func:`save_checkpoint` (safely: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not is_train_state(state):
        raise ValueError(
            f"{path} is not a vitkit training checkpoint; to start from pre-trained weights use "
            "`vitkit finetune --checkpoint` (model.pretrained in a recipe) instead of --resume"
        )
    if state["version"] > VERSION:
        raise ValueError(f"{path} was written by a newer vitkit (format version {state['version']}); upgrade vitkit")
    return state


def is_train_state(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def find_resume_checkpoint(target: str | Path) -> Path:
    """A checkpoint file, or a run folder whose ``checkpoints/last.pt`` is used."""
    target = Path(target)
    if target.is_dir():
        target = target / "checkpoints" / "last.pt"
    if not target.is_file():
        raise FileNotFoundError(
            f"no checkpoint to resume from at {target}; the run may not have saved one yet (see "
            "train.checkpoint_every_steps), or start afresh without --resume"
        )
    return target


_UNREADABLE = (RuntimeError, EOFError, OSError, pickle.UnpicklingError)  # torch.load on a cut or corrupt file


def load_resume_checkpoint(target: str | Path) -> tuple[Path, dict[str, Any]]:
    """(path, state) to resume from ``target`` (a checkpoint or a run folder).

    When the checkpoint cannot be read (a disk filled up or a copy was cut short), the newest intact resumable
    checkpoint beside it (``best.pt`` holds a full state too) is used instead, with a note naming both.
    """
    path = find_resume_checkpoint(target)
    try:
        return path, load_checkpoint(path)
    except _UNREADABLE as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        for other in sorted(path.parent.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True):
            if other == path:
                continue
            try:
                state = load_checkpoint(other)
            except (*_UNREADABLE, ValueError):
                continue
            if "optimizer" in state:
                step = state.get("progress", {}).get("global_step", "?")
                log.warning(f"note: {path} is unreadable ({reason}); resuming from {other} (step {step}) instead")
                return other, state
        raise ValueError(
            f"{path} is unreadable ({reason}) and no intact checkpoint lies beside it; start afresh without --resume"
        ) from None
