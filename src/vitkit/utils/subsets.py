"""Seeded subsets of a dataset, for quick runs, tests and evaluation limits.

A subset keeps ``classes`` and ``targets`` and forwards the per-sample seed a loader attaches to an index (any
``int`` subclass with a ``seed``), so a run over a subset is the same with any number of workers.
"""

from __future__ import annotations

from typing import Any

import torch


class SubsetDataset(torch.utils.data.Dataset):
    """A fixed subset of ``dataset`` that keeps ``classes`` and ``targets``."""

    def __init__(self, dataset: Any, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)
        self.classes = list(getattr(dataset, "classes", []))
        targets = getattr(dataset, "targets", None)
        self.targets = [targets[i] for i in self.indices] if targets is not None else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        index = self.indices[i]
        seed = getattr(i, "seed", None)
        return self.dataset[type(i)(index, seed) if seed is not None else index]


def seeded_indices(length: int, size: int, seed: int) -> list[int]:
    """``size`` sorted indices of ``range(length)`` drawn without replacement by ``seed``."""
    order = torch.randperm(length, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[:size])


def seeded_subset(dataset: Any, size: int | None, seed: int) -> Any:
    """``size`` samples drawn without replacement by ``seed`` (the whole dataset when ``size`` is None).

    A dataset with a ``subset(indices)`` method (the in-memory one) makes its own, staying on its fast path.
    """
    if size is None or size >= len(dataset):
        return dataset
    keep = seeded_indices(len(dataset), size, seed)
    if hasattr(dataset, "subset"):
        return dataset.subset(keep)
    return SubsetDataset(dataset, keep)
