"""Repeated augmentation (Hoffer et al. 2020; Berman et al. 2019), as DeiT trains with it (``data.repeated_aug: 3``).

Each epoch draws a seeded permutation of the data set and repeats every index ``r`` times in a row; rank ``k`` of
``W`` processes takes every W-th entry, so the ``r`` copies of one image land on different processes (or, on one
process, side by side in one batch), each getting its own random augmentation. As in DeiT's ``RASampler`` an epoch
keeps the length of an epoch without repetition (ceil(N / W) samples per process): it sees about N / r distinct
images, each r times, so epoch counts and schedules mean what they mean without it. Subclassing
:class:`ResumableSampler` keeps seeding, mid-epoch resume and per-rank lengths identical.
"""

from __future__ import annotations

import torch

from vitkit.train.sampler import ResumableSampler


class RepeatedAugSampler(ResumableSampler):
    """A :class:`ResumableSampler` whose epoch order repeats each drawn index ``repeats`` times."""

    def __init__(self, num_samples: int, repeats: int = 3, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if repeats < 1:
            raise ValueError(f"data.repeated_aug must be >= 1 (1 = off; DeiT uses 3), got {repeats}")
        super().__init__(num_samples, seed, shuffle=True, rank=rank, world_size=world_size, pad=True)
        self.repeats = repeats

    def order(self) -> list[int]:
        """This rank's order for the current epoch: ceil(N / W) entries of the repeated permutation."""
        if self.repeats == 1:
            return super().order()
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.num_samples, generator=gen)
        repeated = perm.repeat_interleave(self.repeats).tolist()  # i, i, i, j, j, j, ...
        per_rank = -(-self.num_samples // self.world_size)
        return repeated[self.rank :: self.world_size][:per_rank]
