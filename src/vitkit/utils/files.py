"""Atomic file writes: a reader never sees half a file, and a run killed mid-write leaves the previous file intact.

Everything goes to a temporary name in the target's folder (so the final ``os.replace`` is atomic on POSIX and
Windows), is flushed to disk, and only then renamed onto the target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp", mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, mode)  # mkstemp's 0600 would hide caches and results from other users
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], binary: bool = True) -> Path:
    """Call ``write(file)`` on an open temporary file, fsync it, then rename it onto ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically (``savefig`` on the temporary path, then the rename)."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)
