"""Where a run's training states go: ``checkpoints/last.pt`` (what ``--resume`` continues), ``best.pt`` (the state
of the best evaluation, also a fallback when last.pt is damaged), and with ``train.keep_checkpoints: N`` the N
newest periodic states besides (``step-<step>.pt``). Nothing else accumulates: partial files that a run killed
mid-write left behind are removed when the next run starts. The file format (safe to read with
``weights_only=True``, written atomically) lives in :mod:`vitkit.train.state`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vitkit.train.state import save_checkpoint

log = logging.getLogger("vitkit.train")


class Checkpointer:
    """Writes and prunes the run's training states; only the main process writes (``enabled``)."""

    def __init__(self, run_dir: Path | None, enabled: bool = True, keep: int = 0) -> None:
        self.folder = Path(run_dir) / "checkpoints" if run_dir is not None else None
        self.enabled = enabled and self.folder is not None
        self.keep = keep
        if self.enabled and self.folder.is_dir():
            for stale in self.folder.glob(".*.pt.*.tmp"):  # a SIGKILL mid-write; the previous file is intact
                stale.unlink(missing_ok=True)

    @property
    def last(self) -> Path | None:
        return self.folder / "last.pt" if self.folder is not None else None

    def save(self, state: dict[str, Any], name: str = "last", best: dict[str, Any] | None = None) -> Path | None:
        """Write ``checkpoints/<name>.pt``; with ``best`` (its metrics and step), ``best.pt`` gets the same state.
        Periodic saves (``name="last"`` mid-run) also keep ``step-<step>.pt`` when ``keep`` asks."""
        if not self.enabled:
            return None
        path = save_checkpoint(self.folder / f"{name}.pt", **state)
        if best is not None:
            save_checkpoint(self.folder / "best.pt", **state, **best)
        if self.keep and name == "last":
            step = state["progress"]["global_step"]
            save_checkpoint(self.folder / f"step-{step:07d}.pt", **state)
            for old in sorted(self.folder.glob("step-*.pt"))[: -self.keep]:
                old.unlink(missing_ok=True)
        return path
