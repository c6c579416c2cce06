"""What a run folder keeps: last.pt and best.pt, the N newest step-<step>.pt with train.keep_checkpoints: N, and
nothing a killed write left behind."""

from __future__ import annotations

import torch

from vitkit.train.checkpointer import Checkpointer
from vitkit.train.state import load_checkpoint


def _state(step: int) -> dict:
    return {"model": {"w": torch.full((2,), float(step))}, "progress": {"global_step": step}}


def test_keeps_last_best_and_the_newest_n(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2)
    for step in (10, 20, 30):
        ckpt.save(_state(step), best={"best_metrics": {"top1": step / 100}} if step == 20 else None)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best.pt", "last.pt", "step-0000020.pt", "step-0000030.pt"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["progress"]["global_step"] == 30
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["progress"]["global_step"] == 20 and best["best_metrics"] == {"top1": 0.2}
    assert torch.equal(
        load_checkpoint(tmp_path / "checkpoints" / "step-0000020.pt")["model"]["w"], torch.full((2,), 20.0)
    )


def test_by_default_only_last_and_best(tmp_path):
    ckpt = Checkpointer(tmp_path)
    for step in (1, 2, 3):
        ckpt.save(_state(step))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt"]


def test_partial_writes_of_a_killed_run_are_removed_and_finished_files_kept(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")  # what atomic_path leaves on SIGKILL
    Checkpointer(tmp_path).save(_state(5))
    (folder / ".best.pt.xyz.tmp").write_bytes(b"half")
    Checkpointer(tmp_path, enabled=False)  # a process that does not write leaves the folder alone
    assert (folder / ".best.pt.xyz.tmp").exists()
    Checkpointer(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt"]
