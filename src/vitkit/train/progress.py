"""A dependency-free progress line for training: step, loss, learning rate, images/s and ETA.

On a terminal the line redraws in place; in a log file (no TTY) it prints a plain line every
``every_seconds`` so that logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """``update(done, **values)`` redraws ``desc [####----] done/total key value ... ETA``."""

    def __init__(
        self, total: int, desc: str = "", enabled: bool = True, stream: TextIO | None = None, every_seconds=30.0
    ):
        self.total = max(total, 1)
        self.desc = desc
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every_seconds = every_seconds
        self.start = time.perf_counter()
        self.last_print = self.start
        self.start_done: int | None = None

    def update(self, done: int, **values: object) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.start_done is None:  # a resumed epoch starts counting from where it resumed
            self.start_done, self.start = done, now
            return
        if not self.tty and now - self.last_print < self.every_seconds and done < self.total:
            return
        self.last_print = now
        rate = (done - self.start_done) / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        width = 20
        filled = int(width * done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        fields = "  ".join(f"{k} {_fmt(v)}" for k, v in values.items())
        eta_text = format_duration(eta) if eta == eta else "?"
        line = f"{self.desc} [{bar}] {done}/{self.total}  {fields}  ETA {eta_text}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4g}"
    return str(value)
