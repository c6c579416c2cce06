"""The engine's data loaders, built outside the trainer and passed in: a resumable, seeded, per-process sampler
for training (full batches only) and an unpadded shard of the evaluation split per process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import DataLoader

from vitkit.data.loader import create_loader
from vitkit.train.recipe import Recipe
from vitkit.train.sampler import ResumableSampler
from vitkit.utils.distributed import DistInfo


def micro_batch_size(recipe: Recipe, world_size: int = 1) -> int:
    """The per-process, per-accumulation-step batch: ``train.batch_size`` is global."""
    t = recipe.train
    if t.batch_size % (world_size * t.accum_steps):
        raise ValueError(
            f"train.batch_size {t.batch_size} must be divisible by processes x accum_steps = "
            f"{world_size} x {t.accum_steps}; pick a batch size that is a multiple of {world_size * t.accum_steps}"
        )
    return t.batch_size // (world_size * t.accum_steps)


def build_loaders(
    recipe: Recipe,
    train_set: Any,
    eval_set: Any = None,
    dist: DistInfo | None = None,
    eval_batch: Callable[[int], int] = lambda requested: requested,
) -> tuple[DataLoader, DataLoader | None]:
    """(training loader, evaluation loader or None) for this process. ``eval_batch`` maps the requested evaluation
    batch to one the task can form (a task whose images differ in size takes them one at a time)."""
    t, dist = recipe.train, dist or DistInfo()
    micro = micro_batch_size(recipe, dist.world_size)
    workers = getattr(recipe.data, "num_workers", 0)
    repeats = getattr(recipe.data, "repeated_aug", 1)
    if repeats > 1:  # DeiT's repeated augmentation; same resumable seeding and per-rank length
        from vitkit.train.repeated_aug import RepeatedAugSampler

        sampler = RepeatedAugSampler(len(train_set), repeats, t.seed, dist.rank, dist.world_size)
    else:
        sampler = ResumableSampler(len(train_set), t.seed, True, dist.rank, dist.world_size)
    loader = create_loader(train_set, micro, shuffle=False, num_workers=workers, seed=t.seed, drop_last=True,
                           sampler=sampler)  # fmt: skip
    eval_loader = None
    batch = eval_batch(t.eval_batch_size or micro)
    if eval_set is not None and t.parallel == "fsdp" and dist.enabled:
        _check_even_eval(len(eval_set), batch, dist.world_size)
    if eval_set is not None:
        eval_sampler = ResumableSampler(len(eval_set), t.seed, False, dist.rank, dist.world_size, pad=False)
        eval_loader = create_loader(eval_set, batch, shuffle=False, num_workers=workers, seed=t.seed,
                                    drop_last=False, sampler=eval_sampler)  # fmt: skip
    return loader, eval_loader


def resumable_sampler(loader: DataLoader) -> ResumableSampler:
    """The training loader's :class:`ResumableSampler`, through which the engine selects epochs and resumes."""
    for candidate in (getattr(getattr(loader, "seeded_sampler", None), "base", None), loader.sampler):
        if isinstance(candidate, ResumableSampler):
            return candidate
    raise ValueError("the training loader has no ResumableSampler; build it with vitkit.train.loaders.build_loaders")


def steps_per_epoch(sampler: ResumableSampler, micro_batch: int, recipe: Recipe) -> int:
    """Optimiser steps in one epoch of this process's samples (full batches only)."""
    t = recipe.train
    steps = len(sampler) // (micro_batch * t.accum_steps)
    if steps == 0:
        raise ValueError(
            f"{sampler.num_samples} training images do not fill one batch of {t.batch_size}; lower train.batch_size"
        )
    return steps


def _check_even_eval(num_samples: int, batch: int, world: int) -> None:
    """Sharded (FSDP) evaluation runs every forward on all ranks together, so each needs as many batches."""
    counts = {-(-len(range(r, num_samples, world)) // batch) for r in range(world)}
    if len(counts) > 1:
        raise ValueError(
            f"with train.parallel: fsdp every process needs as many evaluation batches, but {num_samples} images "
            f"in batches of {batch} over {world} processes do not split evenly; set train.eval_subset or "
            "train.eval_batch_size so that they do"
        )
