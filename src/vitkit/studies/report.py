"""A study's written results: tables as CSV (every number, machine-readable) and Markdown (for reading), and the
figure helpers its pictures share."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitkit.utils.files import atomic_save_figure, atomic_write_text


@dataclass(frozen=True)
class Column:
    """A table column: the row key, its heading and how Markdown shows the value (CSV keeps it raw)."""

    key: str
    heading: str
    shown: Callable[[Any], str] = lambda v: "" if v is None else str(v)


def write_csv(rows: Sequence[dict[str, Any]], columns: Sequence[Column], path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for row in rows:
        writer.writerow(["" if row.get(c.key) is None else _raw(row.get(c.key)) for c in columns])
    return atomic_write_text(buf.getvalue(), path)


def _raw(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    lines = ["| " + " | ".join(c.heading for c in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c.shown(row.get(c.key)) for c in columns) + " |")
    return "\n".join(lines)


def write_markdown(path: Path, title: str, sections: Sequence[str]) -> Path:
    text = f"# {title}\n\n" + "\n\n".join(s.strip() for s in sections if s and s.strip()) + "\n"
    return atomic_write_text(text, path)


def pct(digits: int = 1) -> Callable[[Any], str]:
    return lambda v: "" if v is None else f"{100 * v:.{digits}f}%"


def num(fmt: str) -> Callable[[Any], str]:
    return lambda v: "" if v is None else format(v, fmt)


def millions(v: Any) -> str:
    return "" if v is None else f"{v / 1e6:.2f}M"


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, **kw: Any):
    """A matplotlib figure (no pyplot state) and its axes; needs ``vitkit[viz]``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    return fig, axes


def save(fig: Any, path: Path, dpi: int = 110) -> Path:
    return atomic_save_figure(fig, path, dpi=dpi)


def plain_log_ticks(ax: Any) -> None:
    """Ticks of a log x axis at 1, 2, 5 per decade, labelled as plain numbers (50, 100, 1,000), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


MODEL_STYLE = {"vit": ("tab:blue", "o"), "hybrid": ("tab:green", "s"), "resnet": ("tab:red", "^")}


def model_style(role: str, index: int = 0) -> dict[str, Any]:
    colour, marker = MODEL_STYLE.get(role, (f"C{index}", "o"))
    return {"color": colour, "marker": marker}


def tile_pictures(paths: Sequence[Path], titles: Sequence[str], out: Path, title: str, cols: int = 3) -> Path:
    """Several PNG pictures side by side in one figure, each under its title."""
    import matplotlib.image as mpimg

    rows = -(-len(paths) // cols)
    images = [mpimg.imread(str(p)) for p in paths]
    aspect = max(im.shape[0] / im.shape[1] for im in images)
    fig, axes = new_figure(4.0 * cols, 4.0 * aspect * rows + 0.6, rows, cols)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, image, name in zip(axes.ravel(), images, titles):
        ax.imshow(image)
        ax.set_title(name, fontsize=11)
    fig.suptitle(title, fontsize=13)
    return save(fig, out, dpi=130)
