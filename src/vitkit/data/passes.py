"""One pass over a data set's files with worker processes (verifying, decoding into memory), the global RNG left
alone.

A DataLoader draws its workers' base seed from a generator when it starts iterating; without one of its own it
takes it from torch's global RNG. A decoding pass that ran only when no cache existed would then shift every later
draw (the model's initialisation among them), so a first run and a run from the cache would differ. Every such pass
goes through :func:`pass_loader`, whose loader has its own generator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


def _as_list(items: list) -> list:
    return items


def pass_loader(dataset: Dataset, workers: int, batch_size: int = 256, collate: Callable[[list], Any] = _as_list):
    """Batches of ``dataset``'s items as lists (by default), in order, with ``workers`` processes."""
    return DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate, generator=torch.Generator()
    )
