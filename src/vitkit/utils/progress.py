"""Console feedback without dependencies: progress lines for long work, and console logging for the library.

``Progress`` counts items (images decoded, batches evaluated) and stays silent for work that ends within
``delay`` seconds; ``ProgressBar`` is the training line with named values (loss, lr, images/s). On a terminal both
redraw in place; in a log file (no TTY) they print a few plain lines, so logs stay readable.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """``M:SS``, or ``H:MM:SS`` from an hour on."""
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _is_tty(stream: TextIO) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


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
        enabled: bool = True,
    ) -> None:
        self.total, self.desc, self.unit, self.delay, self.scale = total, desc, unit, delay, scale
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0
        self._shown = False
        self._tty = _is_tty(self.stream)
        self._next_fraction = 0.25  # log-file mode: a line at 25 %, 50 %, 75 %, 100 %

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if not self.enabled or now - self.start < self.delay:
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
            text += f" [{format_duration(elapsed)}<{format_duration(eta)}, {rate * self.scale:,.0f} {self.unit}/s]"
        else:
            rate_text = f"{rate * self.scale:,.0f} {self.unit}/s"
            text = f"{self.desc}: {shown:,.0f} {self.unit} [{format_duration(elapsed)}, {rate_text}]"
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


class ProgressBar:
    """``update(done, **values)`` redraws ``desc [####----] done/total key value ... ETA``."""

    def __init__(
        self, total: int, desc: str = "", enabled: bool = True, stream: TextIO | None = None, every_seconds=30.0
    ) -> None:
        self.total = max(total, 1)
        self.desc = desc
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and _is_tty(self.stream)
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
        self.stream.write("\r\033[K" + line if self.tty else line + "\n")
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


class CurrentStreamHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` (or ``sys.stderr``) is at the time of each line, so that redirection
    (``contextlib.redirect_stdout``, a test's capture) is followed and a stream closed since is never written."""

    def __init__(self, name: str = "stdout") -> None:
        super().__init__(getattr(sys, name))
        self.name_of_stream = name

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = getattr(sys, self.name_of_stream)
        super().emit(record)


def console_logging(name: str = "vitkit") -> logging.Logger:
    """Show ``name``'s INFO lines as plain stdout lines, unless the application configured logging itself."""
    logger = logging.getLogger(name)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = CurrentStreamHandler("stdout")
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
