"""A dependency-free progress line for the slow steps of data preparation (scan, decode, download).

It stays silent for work that finishes within ``delay`` seconds, redraws at most a few times a second on a
terminal, and prints a handful of plain lines when stderr is a log file.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 60:02d}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds // 60 % 60:02d}"
    )


class Progress:
    """``with Progress(total, "decode", unit="img") as bar: bar.update(n)``."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        delay: float = 1.0,
        stream: TextIO | None = None,
        scale: float = 1.0,
    ) -> None:
        self.total, self.desc, self.unit, self.delay, self.scale = total, desc, unit, delay, scale
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0
        self._shown = False
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._next_fraction = 0.25  # log-file mode: a line at 25 %, 50 %, 75 %, 100 %

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.start < self.delay:
            return
        if self._tty:
            if now - self._last >= 0.2:
                self._draw(end="\r")
                self._last = now
        elif self.total and self.done >= self._next_fraction * self.total:
            self._draw(end="\n")
            while self._next_fraction * self.total <= self.done:
                self._next_fraction += 0.25

    def _draw(self, end: str) -> None:
        elapsed = time.perf_counter() - self.start
        rate = self.done / max(elapsed, 1e-9)
        shown = self.done * self.scale
        if self.total:
            pct = 100 * self.done / self.total
            eta = (self.total - self.done) / max(rate, 1e-9)
            text = f"{self.desc}: {pct:3.0f}% {shown:,.0f}/{self.total * self.scale:,.0f} {self.unit}"
            text += f" [{_fmt_time(elapsed)}<{_fmt_time(eta)}, {rate * self.scale:,.0f} {self.unit}/s]"
        else:
            text = (
                f"{self.desc}: {shown:,.0f} {self.unit} [{_fmt_time(elapsed)}, {rate * self.scale:,.0f} {self.unit}/s]"
            )
        self.stream.write(text.ljust(78) + end)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown and (self._tty or self.done * 1.0 < (self.total or 0)):
            self._draw(end="\n")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
