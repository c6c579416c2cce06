"""Loaders: reproducible under a seed whatever the worker count; the in-memory path and its disk cache."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset

from data_images import CIFAR10_CLASSES, make_class_folder, make_mixed_folder
from paths import CIFAR, REPO
from vitkit.data import BatchAugment, DataConfig, InMemoryDataset, build_dataset, create_loader, set_epoch
from vitkit.data import memory as memory_mod
from vitkit.data.loader import SeededSampler, sample_seed


@pytest.fixture
def folder(tmp_path):
    return make_class_folder(tmp_path / "data" / "train", {"a": 6, "b": 5, "c": 5}, size=(20, 18))


def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def _equal(a, b) -> bool:
    if len(a) != len(b):
        return False
    return all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b, strict=True))


def test_same_seed_same_batches_with_0_or_2_workers(folder):
    cfg = DataConfig(dataset=str(folder.parent), img_size=12, train_crop="rrc", verify="none")
    ds = build_dataset(cfg, "train")
    run = lambda workers, seed: _batches(create_loader(ds, 4, shuffle=True, num_workers=workers, seed=seed))
    a = run(0, 1)
    assert _equal(a, run(0, 1))
    assert _equal(a, run(2, 1))  # crops come from per-sample seeds, not from whichever worker ran them
    assert not _equal(a, run(0, 2))
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(ds.targets)  # each sample once per epoch


def test_wrapped_datasets_still_load_reproducibly(folder):
    ds = build_dataset(DataConfig(dataset=str(folder.parent), img_size=12, verify="none"), "train")
    subset = Subset(ds, [0, 3, 5, 7, 9, 11, 13, 15])  # maps the index to another int: the seed is dropped
    run = lambda: _batches(create_loader(subset, 4, shuffle=True, num_workers=1, seed=3))
    a = run()
    assert [len(y) for _, y in a] == [4, 4] and _equal(a, run())


def test_epochs_differ_and_set_epoch_replays_one(folder):
    ds = build_dataset(DataConfig(dataset=str(folder.parent), img_size=12, verify="none"), "train")
    loader = create_loader(ds, 4, shuffle=True, seed=0, drop_last=True)
    first, second = _batches(loader), _batches(loader)
    assert len(first) == 4 and not _equal(first, second)
    set_epoch(loader, 1)
    assert _equal(_batches(loader), second)


def test_wrapped_sampler_supplies_order_and_epoch():
    class Fixed(torch.utils.data.Sampler):
        epoch = 3

        def __iter__(self):
            return iter([4, 1, 2])

        def __len__(self):
            return 3

    seeded = SeededSampler(10, seed=5, base=Fixed())
    items = list(seeded)
    assert items == [4, 1, 2] and [i.seed for i in items] == [sample_seed(5, 3, i) for i in (4, 1, 2)]
    clone = pickle.loads(pickle.dumps(items[0]))  # as sent to worker processes
    assert clone == 4 and clone.seed == items[0].seed
    assert len({sample_seed(0, e, i) for e in range(20) for i in range(200)}) == 4000


def test_in_memory_dataset_batches_and_cache(folder, tmp_path, monkeypatch):
    cfg = DataConfig(
        dataset=str(folder.parent),
        img_size=20,
        crop_pct=1.0,
        in_memory=True,
        cache_dir=str(tmp_path / "cache"),
        num_workers=0,
    )
    ds = build_dataset(cfg, "train")
    assert isinstance(ds, InMemoryDataset) and ds.images.shape == (16, 3, 18, 20)  # one size, small enough: as is
    assert ds.classes == ["a", "b", "c"] and ds.targets == [0] * 6 + [1] * 5 + [2] * 5
    stream = build_dataset(cfg.replace(in_memory=False, img_size=(18, 20)), "train", augment=False)
    assert all(torch.equal(ds[i][0], stream[i][0]) for i in range(len(ds)))  # the same pixels, decoded once
    [cached] = list((tmp_path / "cache" / "data").glob("*.npz"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(memory_mod, "decode_all", no_decoding)
    again = build_dataset(cfg, "train")
    assert torch.equal(again.images, ds.images)
    first = Path(folder / "a" / "000.png")
    os.utime(first, ns=(0, 0))  # a changed file changes the key
    with pytest.raises(AssertionError, match="decoded although"):
        build_dataset(cfg, "train")
    assert cached.exists()

    loader = create_loader(ds, 5, shuffle=True, seed=0)
    batches = _batches(loader)
    assert [len(y) for _, y in batches] == [5, 5, 5, 1] and batches[0][0].dtype == torch.uint8
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == ds.targets
    x, targets = BatchAugment(cfg.replace(randaugment="rand-m5-n1"), 3, train=True)(*batches[0])
    assert x.shape == (5, 3, 20, 20) and x.min() >= -1 - 1e-5 and x.max() <= 1 + 1e-5


def test_in_memory_skips_unreadable_images_and_resizes_mixed_sizes(tmp_path, caplog):
    make_mixed_folder(tmp_path / "mixed")
    cfg = DataConfig(
        dataset=str(tmp_path / "mixed"), img_size=8, crop_pct=0.5, in_memory=True, cache=False, num_workers=0
    )
    with caplog.at_level("WARNING", logger="vitkit.data"):
        ds = build_dataset(cfg, "train")
    assert "skipped 3" in caplog.text
    assert ds.images.shape == (11, 3, 16, 16)  # mixed sizes: cover img_size / crop_pct
    assert ds.targets == [0] * 9 + [1] * 2


@pytest.mark.skipif(not CIFAR.is_dir(), reason="needs ../shared/data/cifar10")
def test_real_cifar10_from_the_shared_data_root(monkeypatch):
    monkeypatch.chdir(REPO)  # the repository: 'cifar10' resolves via ../shared/data
    monkeypatch.delenv("VITKIT_DATA", raising=False)
    cfg = DataConfig.from_model_config("vit_tiny_patch4_32", dataset="cifar10", train_crop="pad", verify="none")
    ds = build_dataset(cfg, "test")
    assert ds.classes == CIFAR10_CLASSES and len(ds) == 10_000
    assert Path(ds.source.paths[0]).is_relative_to(CIFAR.resolve()) or Path(ds.source.paths[0]).is_relative_to(CIFAR)
    picks = Subset(ds, list(range(0, 10_000, 33)))  # 304 images across all classes
    images, labels = next(iter(torch.utils.data.DataLoader(picks, batch_size=len(picks))))
    assert images.shape == (304, 3, 32, 32) and images.dtype == torch.uint8
    assert set(labels.tolist()) == set(range(10))
    assert 90 < images.float().mean() < 150 and images.float().std() > 40  # natural images, not blank or noise
    x, y = BatchAugment(cfg, 10, train=False)(images, labels)
    assert -1.0 <= x.min() and x.max() <= 1.0 + 1e-6
