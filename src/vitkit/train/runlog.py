"""The run folder: resolved recipe, metrics (JSONL, TensorBoard when installed), checkpoints and plots.

runs/NAME/
  config.yaml            the resolved recipe, every default written out
  metrics.jsonl          one JSON object per logged step ("kind": "step") and per epoch ("kind": "epoch")
  checkpoints/last.pt    resumable state; best.pt: the best evaluation so far
  model.safetensors      the final weights, readable by vitkit.load_pretrained
  plots/*.png            loss, accuracy (by epoch and by wall time) and learning rate, drawn at the end
  tensorboard/           with train.tensorboard: true (pip install 'vitkit[train]'): the scalars of metrics.jsonl
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from vitkit.utils.files import atomic_save_figure, atomic_write_text
from vitkit.utils.progress import format_duration

log = logging.getLogger("vitkit.train")


class RunLog:
    """Appends metrics to ``metrics.jsonl`` (and to TensorBoard with ``tensorboard``). Only rank 0 makes one."""

    def __init__(self, run_dir: Path, tensorboard: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.writer = _tensorboard_writer(self.run_dir / "tensorboard") if tensorboard else None

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step``: a resumed run re-does those steps and logs them again."""
        if not self.path.exists():
            return
        rows = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        atomic_write_text("".join(json.dumps(r) + "\n" for r in rows), self.path)

    def log(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            prefix = row.get("kind", "step")
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch") and math.isfinite(value):
                    self.writer.add_scalar(f"{prefix}/{key}", value, row.get("step", 0))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: metrics.jsonl has everything
        log.warning("note: train.tensorboard is set but tensorboard is not installed (pip install 'vitkit[train]'); "
                    "metrics.jsonl holds every number")  # fmt: skip
        return None
    return SummaryWriter(str(folder))


def format_number(key: str, value: float, percentages: Collection[str] = ()) -> str:
    """``key value``: a fraction the task names in ``percentages`` as a percentage, anything else as it is."""
    return f"{key} {100 * value:.2f}%" if key in percentages else f"{key} {value:.4g}"


def format_epoch(row: dict[str, Any], num_epochs: int, task: Any = None) -> str:
    """The one-line epoch summary printed during training, with the evaluation numbers ``task`` reports."""
    parts = [f"epoch {row['epoch']}/{num_epochs}", f"step {row['step']}"]
    if row.get("train_loss") is not None:
        parts.append(f"train_loss {row['train_loss']:.4f}")
    if task is not None:
        keys = [*task.percentages, task.best_metric, "eval_loss"]
        percentages = task.percentages
        parts += [format_number(k, row[k], percentages) for k in dict.fromkeys(keys) if row.get(k) is not None]
    parts += [f"lr {row['lr']:.2e}", f"{row['img_per_s']:.0f} img/s", f"wall {format_duration(row['wall_time'])}"]
    return "  ".join(parts)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a ``metrics.jsonl`` file. A last line cut short (a run killed while appending it) is dropped:
    the resumed run logs that step again."""
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1 or line.endswith("\n"):
                raise ValueError(f"{path}: line {i + 1} is not JSON; the metrics file was edited or damaged") from None
    return rows


def plot_metrics(
    rows: list[dict[str, Any]], out_dir: str | Path, percentages: Sequence[str] = ("top1", "top5")
) -> list[Path]:
    """Draw loss, learning rate and the evaluation's ``percentages`` (the task's fractions, against epoch and
    against wall time; ``accuracy.png``) as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = [r for r in rows if r.get("kind") == "step"]
    shown = [k for k in percentages if any(r.get(k) is not None for r in rows if r.get("kind") == "epoch")]
    epochs = [r for r in rows if r.get("kind") == "epoch" and shown and r.get(shown[0]) is not None]
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        written.append(atomic_save_figure(fig, out_dir / name, dpi=110))
        plt.close(fig)

    if steps:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=1, label="train")
        evals = [r for r in epochs if r.get("eval_loss") is not None]
        if evals:
            ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval")
        ax.set(xlabel="step", ylabel="loss", title="Loss")
        ax.legend()
        ax.grid(alpha=0.3)
        save(fig, "loss.png")

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["step"] for r in steps], [r["lr"] for r in steps], lw=1)
        ax.set(xlabel="step", ylabel="learning rate", title="Learning rate")
        ax.grid(alpha=0.3)
        save(fig, "lr.png")

    if epochs:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for key in shown:
            ax1.plot([r["epoch"] for r in epochs], [100 * r[key] for r in epochs], "o-", label=key)
            ax2.plot([r["wall_time"] / 60 for r in epochs], [100 * r[key] for r in epochs], "o-", label=key)
        ax1.set(xlabel="epoch", ylabel="%", title="Evaluation by epoch")
        ax2.set(xlabel="wall time (min)", title="Evaluation by wall time")
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
            ax.legend()
        save(fig, "accuracy.png")
    return written
