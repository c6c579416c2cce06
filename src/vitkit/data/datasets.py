"""Torch datasets over a :class:`~vitkit.data.sources.Source`, and :func:`build_dataset`, the one entry point.

Items are ``(uint8 image (3, H, W), label)``. The loader's sampler passes each index with a seed (an int
carrying ``.seed``, or an ``(index, seed)`` pair) so that random crops do not depend on which worker draws them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from vitkit.data.config import DataConfig
from vitkit.data.decode import DECODE_ERRORS
from vitkit.data.memory import load_in_memory
from vitkit.data.named import NAMED, resolve_named
from vitkit.data.sample_transforms import EvalTransform, TrainTransform
from vitkit.data.sources import Source, split_source, verify

log = logging.getLogger("vitkit.data")

SampleTransform = Callable[[Image.Image, random.Random], torch.Tensor]
_MAX_RETRIES = 10


def _unpack(index: int | tuple[int, int]) -> tuple[int, int | None]:
    """(index, seed) from a SeededIndex (seed attribute), an ``(index, seed)`` pair, or a plain int (no seed)."""
    if isinstance(index, tuple):
        return int(index[0]), int(index[1])
    return int(index), getattr(index, "seed", None)


def sample_rng(seed: int | None) -> random.Random:
    """The per-sample RNG: from the sampler's seed, else from torch's (seeded per worker by the DataLoader)."""
    return random.Random(seed if seed is not None else int(torch.randint(2**62, (1,))))


class ImageDataset(Dataset):
    """Decodes and transforms one sample per call (the work DataLoader workers do in parallel).

    An image that fails to decode is replaced by the next readable one, with a warning naming it
    (``strict=True`` raises instead), so one bad file does not end a long run.
    """

    def __init__(self, source: Source, transform: SampleTransform, strict: bool = False) -> None:
        if len(source) == 0:
            raise ValueError(f"no images in {source.name}")
        self.source = source
        self.transform = transform
        self.strict = strict
        self.classes: list[str] = source.classes
        self.targets: list[int] = source.targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = _unpack(index)
        rng = sample_rng(seed)
        for attempt in range(_MAX_RETRIES):
            j = (i + attempt) % len(self)
            try:
                with self.source.open(j) as img:
                    return self.transform(img, rng), self.targets[j]
            except DECODE_ERRORS as err:
                if self.strict:
                    raise ValueError(f"unreadable image {self.source.describe(j)}: {err} (strict=True)") from err
                log.warning(f"skipping unreadable image {self.source.describe(j)} ({err}); using the next one")
        raise RuntimeError(f"{_MAX_RETRIES} unreadable images in a row from {self.source.name}; check the data")


class InMemoryDataset(Dataset):
    """A decoded split: ``images`` uint8 (N, 3, H, W) as stored; crops and flips happen in BatchAugment.

    Indexing with a list of indices returns a whole batch ``(images (B, 3, H, W), labels (B,))`` in one gather,
    which :func:`~vitkit.data.loader.create_loader` uses instead of per-sample collation.
    """

    def __init__(self, images: torch.Tensor, targets: list[int], classes: list[str], name: str = "") -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} labels")
        self.images = images
        self.labels = torch.as_tensor(targets, dtype=torch.long)
        self.targets = list(targets)
        self.classes = classes
        self.name = name

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, indices: list[int]) -> InMemoryDataset:
        """The samples at ``indices``, still in memory (a seeded subset stays on the batched fast path)."""
        targets = [self.targets[i] for i in indices]
        return InMemoryDataset(self.images[indices], targets, self.classes, name=self.name)

    def __getitem__(self, index):  # noqa: ANN001 - int, (int, seed) or a list of either
        if isinstance(index, list):
            idx = torch.tensor([_unpack(i)[0] for i in index], dtype=torch.long)
            return self.images[idx], self.labels[idx]
        i, _ = _unpack(index)
        return self.images[i], self.targets[i]


def resolve_source(cfg: DataConfig, split: str) -> Source:
    """The listing of ``split`` for ``cfg.dataset`` (a named data set or a path)."""
    name = cfg.dataset
    path = Path(name).expanduser()
    if not path.exists() and cfg.data_root and (Path(cfg.data_root) / name).exists():
        path = Path(cfg.data_root) / name
    if not path.exists() and name.lower() in NAMED:
        path = resolve_named(name, cfg.data_root, cfg.download)
    elif not path.exists():
        raise FileNotFoundError(
            f"data set {name!r} is neither a path nor a named data set ({sorted(NAMED)}); "
            "pass an image folder, a CIFAR pickle folder or a CSV file of 'path,label' rows"
        )
    return split_source(path, split)


def build_dataset(cfg: DataConfig, split: str, *, augment: bool | None = None) -> Dataset:
    """The ``split`` ('train', 'val', 'test') of ``cfg.dataset`` with its per-sample transform.

    Training crops apply when ``augment`` (default: split == 'train'), else the evaluation resize and centre
    crop. With ``cfg.in_memory`` the split is decoded once into an :class:`InMemoryDataset`.
    """
    augment = split == "train" if augment is None else augment
    source = resolve_source(cfg, split)
    if cfg.in_memory:
        images, source = load_in_memory(source, cfg)
        return InMemoryDataset(images, source.targets, source.classes, name=source.name)
    source = verify(source, cfg.verify, cfg.strict, workers=cfg.num_workers)
    transform = TrainTransform(cfg) if augment else EvalTransform(cfg)
    return ImageDataset(source, transform, strict=cfg.strict)
