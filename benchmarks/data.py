"""Is the data pipeline or the model the bottleneck? CIFAR-10 images/s of the training pipeline next to the
training step rate of a small ViT at the same batch size.

    python benchmarks/data.py            # all 50,000 training images (in-memory decode is cached after a run)
    python benchmarks/data.py --quick    # 2,048 images, fewer batches: a smoke test

For 32 px (the CIFAR recipe: zero-padded crop + flip) and 224 px (RandomResizedCrop of the 32 px images up to
224), each loader variant is timed three ways: the loader alone, loader + BatchAugment (the batch work, here on
the CPU), and the whole training loop (loader + augment + forward/backward/AdamW step). The model's own rate is
timed on a fixed batch. The pipeline is the bottleneck when the loop runs slower than the model alone. On a
shared machine every figure is the best of a few interleaved rounds: the one least disturbed by other work.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vitkit  # noqa: E402
from vitkit.data import BatchAugment, DataConfig, ImageDataset, InMemoryDataset, create_loader  # noqa: E402
from vitkit.data.datasets import resolve_source  # noqa: E402
from vitkit.data.memory import load_in_memory  # noqa: E402
from vitkit.data.sample_transforms import TrainTransform  # noqa: E402

# The CIFAR recipe's model (recipes/cifar10_vit.yaml): width 192, depth 6, 3 heads, MLP 384, average pooling.
SMALL_VIT = dict(embed_dim=192, depth=6, num_heads=3, mlp_dim=384, class_token=False, global_pool="avg", num_classes=10)


def model_step(img_size: int, precision: str):
    """A closure doing one training step (forward, soft-target loss, backward, AdamW) on a given batch."""
    patch = 4 if img_size <= 64 else 16
    model = vitkit.create_model("vit_tiny_patch4_32", img_size=img_size, patch_size=patch, **SMALL_VIT)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    def step(x: torch.Tensor, targets: torch.Tensor) -> None:
        with autocast:
            logits = model(x)
        loss = F.cross_entropy(logits.float(), targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, f"{patch}x{patch} patches, {(img_size // patch) ** 2} tokens"


def rate(batches, n_batches: int, batch: int, work=None) -> float:
    """Images/s over ``n_batches`` after one warm-up batch (worker start-up and first allocations excluded)."""
    it = iter(batches)
    first = next(it)
    if work is not None:
        work(*first)
    start = time.perf_counter()
    for _ in range(n_batches):
        item = next(it)
        if work is not None:
            work(*item)
    return n_batches * batch / (time.perf_counter() - start)


def best_of(best: dict):
    """A recorder keeping the highest rate seen for each key."""
    return lambda key, value: best.__setitem__(key, max(best.get(key, 0.0), value))


def forever(loader: DataLoader):
    while True:
        yield from loader


def build_variant(kind: str, workers: int, base: DataConfig, source, batch: int):
    """(loader stream, BatchAugment, setup note) of one pipeline variant."""
    cfg = base.replace(num_workers=workers, in_memory=kind != "stream")
    if kind.startswith("in-memory +"):
        cfg = cfg.replace(randaugment="rand-m9-n2", mixup_alpha=0.8, cutmix_alpha=1.0, random_erasing=0.25)
    setup = ""
    if cfg.in_memory:
        start = time.perf_counter()
        decoded, kept = load_in_memory(source, cfg.replace(num_workers=2))
        ds = InMemoryDataset(decoded, kept.targets, kept.classes)
        setup = f"decode or cache load {time.perf_counter() - start:.1f} s"
    else:
        ds = ImageDataset(source, TrainTransform(cfg))
    loader = create_loader(ds, batch, shuffle=True, num_workers=workers, seed=0, drop_last=True)
    return forever(loader), BatchAugment(cfg, 10, train=True), setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cifar10", help="a named data set or a path (default cifar10)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (the CIFAR recipe's 128)")
    parser.add_argument("--images", type=int, default=None, help="use this many training images (default all)")
    parser.add_argument("--sizes", default="32,224")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each figure is the best round")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="model step dtype (recipe: bf16)")
    parser.add_argument("--quick", action="store_true", help="2,048 images, one round, a few batches per figure")
    args = parser.parse_args()
    images = args.images or (2048 if args.quick else None)
    rounds = 1 if args.quick else args.rounds
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, model {args.precision}")

    source = resolve_source(DataConfig(dataset=args.dataset, verify="none"), "train")
    if images and images < len(source):
        source = source.subset(sorted(random.Random(0).sample(range(len(source)), images)))
    print(f"# {len(source):,} training images from {Path(source.name)}, best of {rounds} interleaved round(s)")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        heavy = size > 64
        base = DataConfig(
            dataset=args.dataset, img_size=size, crop_pct=1.0, train_crop="rrc" if heavy else "pad", label_smoothing=0.1
        )
        step, shape = model_step(size, args.precision)
        n_load = 4 if args.quick else (10 if heavy else 40)
        n_step = 2 if args.quick or heavy else 6
        kinds = [("stream", 0), ("stream", 1), ("stream", 2), ("in-memory", 0), ("in-memory + RA/mix/erase", 0)]
        variants = {k: build_variant(*k, base, source, args.batch) for k in kinds}
        stream, augment, _ = variants[("in-memory", 0)]
        x, t = _soft(augment(*next(stream)))  # the model alone steps on one real, augmented batch
        best: dict = {}
        keep = best_of(best)
        for r in range(rounds):  # interleaved, so that a burst of load from elsewhere hits one round of each
            keep("model", rate([(x, t)] * (n_step + 1), n_step, args.batch, step))
            for k, (stream, augment, _) in variants.items():
                keep((k, "load"), rate(stream, n_load, args.batch))
                keep((k, "aug"), rate(stream, n_load, args.batch, augment))
                keep((k, "loop"), rate(stream, n_step, args.batch, lambda a, b, f=augment, g=step: g(*_soft(f(a, b)))))
            print(f"{size} px round {r + 1}: model ({shape}) {best['model']:.0f} img/s so far", flush=True)
        for k, (_, _, setup) in variants.items():
            load, aug, loop, model = best[(k, "load")], best[(k, "aug")], best[(k, "loop")], best["model"]
            rows.append((size, *k, load, aug, model, loop, "pipeline" if aug < model else "model", setup))
        del variants
    print()
    print(
        "| px | pipeline | workers | loader | loader + BatchAugment | model step alone | training loop "
        "| loop / model | bottleneck | setup |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|---|")
    for size, kind, w, load, aug, model, loop, neck, note in rows:
        print(
            f"| {size} | {kind} | {w} | {load:,.0f} | {aug:,.0f} | {model:,.0f} | {loop:,.0f} | {loop / model:.2f} "
            f"| {neck} | {note} |"
        )
    print("\n(images/s, best of the rounds; bottleneck: the slower of loader + BatchAugment and the model step alone)")


def _soft(pair):
    x, targets = pair
    return x, targets if targets.is_floating_point() else F.one_hot(targets, 10).float()


if __name__ == "__main__":
    main()
