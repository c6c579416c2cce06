"""The in-memory fast path: decode a split once into a uint8 tensor (N, 3, H, W), cached on disk.

For small images on few cores, per-sample decoding costs more than the model step; decoded once, a batch is a
single index into this tensor and its crop and flip are vectorised (:mod:`vitkit.data.geometry`). Images of
one size no larger than needed are kept as they are; others are resized to cover img_size / crop_pct and
centre-cropped, so the tensor has one shape.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vitkit.data.config import DataConfig
from vitkit.data.decode import DECODE_ERRORS
from vitkit.data.passes import pass_loader
from vitkit.data.sample_transforms import EvalTransform
from vitkit.data.sources import Source, report_skipped, verify
from vitkit.utils.files import atomic_path
from vitkit.utils.progress import Progress

_FORMAT = 1  # bump when the stored layout or the storage transform changes

log = logging.getLogger("vitkit.data")


def cache_root(cfg: DataConfig) -> Path:
    base = cfg.cache_dir or os.environ.get("VITKIT_CACHE") or Path.home() / ".cache" / "vitkit"
    return Path(base).expanduser() / "data"


def storage_size(sizes: list[tuple[int, int]], cfg: DataConfig) -> tuple[int, int]:
    """(H, W) of the stored tensor: the images' own size when uniform and small enough, else a cover crop."""
    limit = tuple(math.ceil(s / cfg.crop_pct - 1e-6) for s in cfg.img_size)
    distinct = set(sizes)
    if len(distinct) == 1:
        w, h = distinct.pop()
        if h <= limit[0] and w <= limit[1]:
            return (h, w)
    return limit  # type: ignore[return-value]


def cache_key(source: Source, cfg: DataConfig) -> str:
    """Identifies the stored tensor: the source files' paths, sizes and mtimes, and the storage settings."""
    digest = hashlib.sha1()
    settings = [_FORMAT, source.name, list(cfg.img_size), cfg.crop_pct, cfg.interpolation, len(source)]
    digest.update(json.dumps(settings).encode())
    for path in source.files:
        st = os.stat(path)
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _cache_file(source: Source, cfg: DataConfig) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in source.name)[-60:].strip("-")
    return cache_root(cfg) / f"{slug}-{cache_key(source, cfg)[:16]}.npz"


class _Decode(Dataset):
    def __init__(self, source: Source, keep: list[int], size: tuple[int, int], cfg: DataConfig) -> None:
        self.source, self.keep = source, keep
        self.transform = EvalTransform(cfg, img_size=size, crop_pct=1.0)

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, pos: int) -> tuple[int, torch.Tensor | None, str]:
        i = self.keep[pos]
        try:
            with self.source.open(i) as img:
                return pos, self.transform(img), ""
        except DECODE_ERRORS as err:
            return pos, None, f"{self.source.describe(i)} ({err})"


def decode_all(source: Source, cfg: DataConfig) -> tuple[torch.Tensor, list[int]]:
    """Decode every readable image of ``source``: (uint8 (N, 3, H, W), indices into source kept)."""
    keep = list(range(len(source)))
    sizes = source.sizes
    if sizes is None and source.arrays is not None:
        sizes = [(source.arrays.shape[2], source.arrays.shape[1])] * len(source)
    if sizes is None:  # file sizes are needed to choose the stored shape
        checked = verify(source, "header", cfg.strict, workers=cfg.num_workers)
        kept_paths = set(checked.paths or [])
        keep = [i for i, p in enumerate(source.paths or []) if p in kept_paths]
        sizes = checked.sizes or []
    if not keep:
        raise ValueError(f"no readable images in {source.name}")
    h, w = storage_size(sizes, cfg)
    if source.arrays is not None and source.arrays.shape[1:3] == (h, w):
        return torch.from_numpy(np.ascontiguousarray(source.arrays.transpose(0, 3, 1, 2))), keep
    images = torch.empty(len(keep), 3, h, w, dtype=torch.uint8)
    ok = torch.zeros(len(keep), dtype=torch.bool)
    bad: list[str] = []
    workers = cfg.num_workers if source.paths is not None else 0
    loader = pass_loader(_Decode(source, keep, (h, w), cfg), workers)
    with Progress(len(keep), f"decode {Path(source.name).name} into memory", unit="img") as bar:
        for batch in loader:
            for pos, image, error in batch:
                if image is None:
                    if cfg.strict:
                        raise ValueError(f"unreadable image {error} (strict=True; set strict=False to skip)")
                    bad.append(error)
                else:
                    images[pos] = image
                    ok[pos] = True
            bar.update(len(batch))
    report_skipped(bad, source.name)
    if bad:
        images = images[ok]
        keep = [k for k, good in zip(keep, ok.tolist(), strict=True) if good]
    return images, keep


def load_in_memory(source: Source, cfg: DataConfig) -> tuple[torch.Tensor, Source]:
    """The decoded split and the matching (readable) subset of ``source``, from the disk cache when valid."""
    cache = _cache_file(source, cfg) if cfg.cache and source.paths is not None else None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as stored:
                images, keep = torch.from_numpy(stored["images"]), stored["keep"].tolist()
            return images, source.subset(keep)
        except (OSError, ValueError, KeyError) as err:
            log.warning(f"ignoring unreadable cache {cache} ({err}); decoding again")
    images, keep = decode_all(source, cfg)
    if cache is not None:
        _save(cache, images, keep)
    return images, source.subset(keep) if len(keep) != len(source) else source


def _save(path: Path, images: torch.Tensor, keep: list[int]) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, images=images.numpy(), keep=np.asarray(keep, dtype=np.int64))
    except OSError as err:
        log.warning(f"could not write the in-memory cache {path} ({err}); the next run decodes again")
