"""Training throughput: vitkit's engine next to a plain PyTorch loop over the same model, batch and data.

Both train the same architecture (by default the cifar10_vit recipe's model) on the same in-memory uint8 images
with the same normalisation, bf16 autocast, attention kernel and AdamW; the engine adds what a recipe run has
around each step (sampler, BatchAugment, schedule, loss bookkeeping and periodic logging with its NaN check).
Timed runs alternate engine / plain so that load changes on a shared machine hit both alike; the table reports
medians and the engine's overhead.

    python benchmarks/train.py                      # cifar10_vit model, batch 128, 20 steps x 5 repeats
    python benchmarks/train.py --steps 30 --repeats 7 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="cifar10_vit", help="model and batch from this recipe (a name or a file)")
    p.add_argument("--batch", type=int, help="batch size (default: the recipe's)")
    p.add_argument("--steps", type=int, default=20, help="optimiser steps per timed run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each, interleaved")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--precision", choices=["bf16", "fp32"], help="default: the recipe's")
    return p.parse_args()


def main() -> None:
    from vitkit.data import InMemoryDataset
    from vitkit.train import Trainer, load_recipe
    from vitkit.train.loaders import build_loaders
    from vitkit.train.parallel import attention_backend
    from vitkit.train.run import build_model

    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [
        "data.in_memory=false",  # images arrive at model size: BatchAugment only converts and normalises
        "data.hflip=0",
        "data.padding=0",
        "data.label_smoothing=0",
        "train.eval_every_epochs=0",
        "train.progress=false",
        "train.ema_decay=null",
        "optim.clip_grad_norm=null",
    ]
    if args.batch:
        overrides.append(f"train.batch_size={args.batch}")
    if args.precision:
        overrides.append(f"train.precision={args.precision}")
    recipe = load_recipe(args.recipe, overrides)
    t = recipe.train
    batch, steps, num_classes = t.batch_size, args.steps, 10
    h, w = recipe.data.img_size
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch * steps, 3, h, w), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, num_classes, (batch * steps,), generator=gen).tolist()
    dataset = InMemoryDataset(images, labels, [str(i) for i in range(num_classes)])
    recipe = recipe.replace(train=dataclasses.replace(t, epochs=1, max_steps=steps))

    torch.manual_seed(0)
    engine_model = build_model(recipe, num_classes)
    plain_model = build_model(recipe, num_classes)
    plain_model.load_state_dict(engine_model.state_dict())
    autocast = dict(device_type="cpu", dtype=torch.bfloat16, enabled=t.precision == "bf16")
    attention = attention_backend(t.sdpa_backend)
    mean = torch.tensor(recipe.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(recipe.data.std).view(1, 3, 1, 1)

    def engine_run() -> float:
        loader, _ = build_loaders(recipe, dataset)
        trainer = Trainer(engine_model, recipe, loader, device=torch.device("cpu"), classes=dataset.classes)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.fit()
        return time.perf_counter() - start

    def plain_run() -> float:
        opt = torch.optim.AdamW(plain_model.parameters(), lr=recipe.optim.lr, weight_decay=recipe.optim.weight_decay)
        plain_model.train()
        start = time.perf_counter()
        order = torch.randperm(len(labels))
        targets = torch.tensor(labels)
        for step in range(steps):
            idx = order[step * batch : (step + 1) * batch]
            x = (images[idx].float() / 255 - mean) / std
            with torch.autocast(**autocast), attention():
                logits = plain_model(x)
            loss = F.cross_entropy(logits.float(), targets[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        loss.item()
        return time.perf_counter() - start

    engine_run(), plain_run()  # warm-up: allocator, kernels, first-touch
    times: dict[str, list[float]] = {"plain": [], "engine": []}
    for r in range(args.repeats):
        times["engine"].append(engine_run())
        times["plain"].append(plain_run())
        print(f"repeat {r + 1}/{args.repeats}: engine {times['engine'][-1]:.2f} s, plain {times['plain'][-1]:.2f} s",
              file=sys.stderr)  # fmt: skip
    ips = {k: batch * steps / statistics.median(v) for k, v in times.items()}
    overhead = ips["plain"] / ips["engine"] - 1
    cfg = plain_model.cfg
    print(
        f"model: {cfg.embed_dim}x{cfg.depth} (heads {cfg.num_heads}, MLP {cfg.mlp_dim}), {h}x{w} px, patch "
        f"{cfg.patch_size[0]}, batch {batch}, {t.precision}, sdpa {t.sdpa_backend}, {steps} steps x "
        f"{args.repeats} interleaved repeats; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    print()
    print("| loop | images/s (median) | relative |")
    print("|---|---:|---:|")
    print(f"| plain PyTorch | {ips['plain']:.1f} | 1.000 |")
    print(f"| vitkit engine | {ips['engine']:.1f} | {ips['engine'] / ips['plain']:.3f} |")
    print()
    print(f"engine overhead: {100 * overhead:+.1f}% (target < 5%)")


if __name__ == "__main__":
    main()
