"""Fetch an archive over HTTP with a progress line and an MD5 check, and unpack it; every write is atomic."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from vitkit.utils.files import atomic_path
from vitkit.utils.progress import Progress

# Indirection so that tests can stand in for the network.
urlopen = urllib.request.urlopen
_CHUNK = 1 << 20


def md5sum(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: str | os.PathLike, md5: str | None = None, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` (kept if already there with the right checksum)."""
    dest = Path(dest)
    if dest.is_file() and (md5 is None or md5sum(dest) == md5):
        return dest
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(total, f"download {dest.name}", unit="MB", delay=0.5, scale=1e-6) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
        got = md5sum(tmp)
        if md5 is not None and got != md5:
            raise ValueError(f"checksum mismatch for {url}: md5 {got}, expected {md5}; the download is damaged")
    return dest


def extract(archive: str | os.PathLike, into: str | os.PathLike) -> None:
    """Unpack a tar archive into ``into``; entries appear only once complete, and never outside ``into``."""
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=into, prefix=".extract-"))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        for entry in staging.iterdir():
            target = into / entry.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
