"""DataLoaders whose output depends only on the seed: the same batches with 0, 1 or 8 workers.

The sampler hands each index out with a seed derived from (seed, epoch, index) (a :class:`SeededIndex`); the
per-sample transform draws its randomness from that seed alone. Worker processes are seeded from the loader's
generator as well, for any other randomness a custom transform may use.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from vitkit.data.datasets import InMemoryDataset

_MASK = (1 << 64) - 1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one sample of one epoch (SplitMix64 finaliser over the three numbers)."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & _MASK
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        z = ((z ^ (z >> shift)) * mult) & _MASK
    return (z ^ (z >> 31)) >> 1


class SeededIndex(int):
    """An index that carries its sample's seed. Being an int, it passes through any dataset wrapper
    (``Subset``, a user's own); a wrapper that maps it to another int drops the seed, and the sample then
    draws from torch's RNG, which DataLoader seeds per worker from the loader's generator."""

    seed: int

    def __new__(cls, index: int, seed: int) -> SeededIndex:
        obj = super().__new__(cls, index)
        obj.seed = seed
        return obj

    def __getnewargs__(self) -> tuple[int, int]:  # pickled to worker processes
        return (int(self), self.seed)


class SeededSampler(Sampler):
    """Yields :class:`SeededIndex` items; shuffles with a per-epoch permutation, or wraps another sampler.

    The epoch is the wrapped sampler's ``epoch`` attribute when it has one (DistributedSampler, resumable
    samplers), else this sampler's own, set by :meth:`set_epoch` or advanced by one per pass.
    """

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = False, base: Sampler | None = None) -> None:
        self.num_samples, self.seed, self.shuffle, self.base = num_samples, seed, shuffle, base
        self.epoch = 0
        self._explicit = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._explicit = epoch, True
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def _indices(self, epoch: int) -> list[int]:
        if self.base is not None:
            return list(self.base)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            return torch.randperm(self.num_samples, generator=gen).tolist()
        return list(range(self.num_samples))

    def __iter__(self) -> Iterator[SeededIndex]:
        epoch = getattr(self.base, "epoch", self.epoch)
        if self.base is None and not self._explicit:
            self.epoch += 1  # the next pass is the next epoch unless set_epoch says otherwise
        self._explicit = False
        for i in self._indices(epoch):
            yield SeededIndex(int(i), sample_seed(self.seed, epoch, int(i)))

    def __len__(self) -> int:
        return len(self.base) if self.base is not None else self.num_samples  # type: ignore[arg-type]


def create_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader of ``(uint8 images (B, 3, H, W), labels (B,))`` batches, reproducible under ``seed``.

    ``sampler`` (e.g. a distributed one) replaces ``shuffle``. Workers are persistent and memory is pinned
    when CUDA is present. An :class:`InMemoryDataset` is read a batch at a time in the main process: one gather
    per batch, which no worker could beat.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    seeded = SeededSampler(len(dataset), seed=seed, shuffle=shuffle, base=sampler)  # type: ignore[arg-type]
    pin = torch.cuda.is_available()
    generator = torch.Generator().manual_seed(seed)
    if isinstance(dataset, InMemoryDataset):
        batches = BatchSampler(seeded, batch_size, drop_last)
        loader = DataLoader(dataset, batch_size=None, sampler=batches, pin_memory=pin, generator=generator)
    else:
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=seeded,
            drop_last=drop_last,
            num_workers=num_workers,
            pin_memory=pin,
            persistent_workers=num_workers > 0,
            generator=generator,
        )
    loader.seeded_sampler = seeded  # set_epoch(loader, epoch) reaches it
    return loader


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Select the epoch whose order and crops a loader from :func:`create_loader` yields next (for resuming)."""
    loader.seeded_sampler.set_epoch(epoch)
