"""A seeded, resumable, optionally distributed sampler.

Each epoch's order is a permutation drawn from its own generator seeded with (seed, epoch), so it depends on
nothing else the run does; ``start`` skips the samples already consumed, which is how a resumed run continues
mid-epoch. With several processes, rank r takes every world-th index of the permutation (as torch's
DistributedSampler does), so batch j over all ranks together holds the same samples as batch j of a single
process whose batch is world times larger.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    def __init__(
        self,
        num_samples: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        if num_samples < 1:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order and skip its first ``start`` samples of this rank."""
        self.epoch = epoch
        self.start = start

    def order(self) -> list[int]:
        """This rank's full order for the current epoch (before skipping)."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            indices = torch.randperm(self.num_samples, generator=gen).tolist()
        else:
            indices = list(range(self.num_samples))
        if self.pad:  # every rank gets the same count: repeat the head of the order
            total = -(-self.num_samples // self.world_size) * self.world_size
            indices += indices[: total - len(indices)]
        return indices[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start :])

    def __len__(self) -> int:
        n, w = self.num_samples, self.world_size
        per_rank = -(-n // w) if self.pad else len(range(self.rank, n, w))
        return max(per_rank - self.start, 0)
