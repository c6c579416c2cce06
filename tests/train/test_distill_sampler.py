"""Repeated augmentation (``data.repeated_aug``): seeded, resumable, and sharded so that over 2 simulated ranks
each drawn index appears exactly ``r`` times per epoch, its copies on different ranks."""

from __future__ import annotations

from collections import Counter

import pytest

from vitkit.train.repeated_aug import RepeatedAugSampler


@pytest.mark.parametrize("n, repeats, world", [(30, 3, 2), (31, 3, 2), (20, 2, 2), (12, 3, 1)])
def test_each_index_repeats_r_times_across_ranks(n, repeats, world):
    shards = [RepeatedAugSampler(n, repeats, seed=5, rank=r, world_size=world) for r in range(world)]
    for s in shards:
        s.set_epoch(2)
    orders = [list(s) for s in shards]
    per_rank = -(-n // world)
    assert all(len(o) == per_rank == len(s) for o, s in zip(orders, shards))  # as without repetition
    merged = [i for step in zip(*orders) for i in step]  # the global order, rank-interleaved
    runs = [merged[k : k + repeats] for k in range(0, len(merged), repeats)]
    assert all(len(set(run)) == 1 for run in runs)  # runs of r copies of one image ...
    heads = [run[0] for run in runs]
    assert len(set(heads)) == len(heads)  # ... each image in one run only
    counts = Counter(merged)
    assert all(counts[i] == repeats for i in heads[:-1]) and 1 <= counts[heads[-1]] <= repeats
    assert all(0 <= i < n for i in merged)
    if world > 1:  # the copies of an image go to different ranks at the same step
        assert orders[0][0] == orders[1][0]


def test_epochs_differ_and_resume_skips_consumed_samples():
    a, b = (
        RepeatedAugSampler(40, 3, seed=1, rank=1, world_size=2),
        RepeatedAugSampler(40, 3, seed=1, rank=1, world_size=2),
    )
    a.set_epoch(0)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(0, start=7)
    assert list(b) == first[7:] and len(b) == len(first) - 7


def test_bad_repeat_count():
    with pytest.raises(ValueError, match="repeated_aug must be >= 1"):
        RepeatedAugSampler(10, 0)


def test_recipe_key_selects_the_sampler_for_each_rank(tmp_path):
    """``data.repeated_aug: 3`` in a recipe gives every process a repeated-augmentation shard of the same order."""
    from train_data import tiny_recipe
    from vitkit.train.loaders import build_loaders, resumable_sampler
    from vitkit.train.recipe import recipe_from_dict
    from vitkit.utils.distributed import DistInfo

    recipe = recipe_from_dict(tiny_recipe(tmp_path, tmp_path / "runs", data={"repeated_aug": 3}))
    samplers = [resumable_sampler(build_loaders(recipe, list(range(30)), dist=DistInfo(r, 2))[0]) for r in (0, 1)]
    assert all(isinstance(s, RepeatedAugSampler) and s.repeats == 3 for s in samplers)
    merged = [i for pair in zip(*(list(s) for s in samplers)) for i in pair]
    assert Counter(merged[:27]) == Counter({i: 3 for i in merged[:27:3]})
    with pytest.raises(ValueError, match="repeated_aug must be >= 1"):
        recipe_from_dict(tiny_recipe(tmp_path, tmp_path / "runs", data={"repeated_aug": 0}))
