"""Few-shot linear probes of an MAE encoder against the same architecture at random initialisation and against a
supervised encoder (issue 12's table), printed as Markdown rows for docs/benchmarks.md.

    python benchmarks/mae_probe.py --mae runs/mae_cifar10/model.safetensors \
        --supervised runs/cifar10_vit/model.safetensors [--data cifar10] [--shots 1,5,10,25] [--seeds 3]

The random-initialisation row builds the MAE checkpoint's own architecture with seed 0 (vitkit's MAE
initialisation) and probes its encoder the same way: average-pooled patch tokens after fc_norm. The probe is
vitkit's few-shot evaluation (big_vision's closed-form ridge regression on frozen pre-logits features).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from vitkit.eval.api import fewshot_evaluate
from vitkit.families import build_model
from vitkit.weights import load_pretrained, save_pretrained


def random_twin(mae_checkpoint: str, folder: Path) -> Path:
    """The MAE checkpoint's architecture, freshly initialised (seed 0), saved as a vitkit file."""
    cfg = load_pretrained(mae_checkpoint).cfg
    torch.manual_seed(0)
    return save_pretrained(build_model(cfg), folder / "mae_random_init.safetensors")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mae", required=True, help="an MAE checkpoint (e.g. runs/mae_cifar10/model.safetensors)")
    p.add_argument("--supervised", help="a supervised checkpoint of the same encoder size (runs/cifar10_vit/...)")
    p.add_argument("--data", default="cifar10")
    p.add_argument("--shots", default="1,5,10,25")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--test-limit", type=int, help="a seeded subset of the test split (default: all of it)")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    shots = [int(s) for s in args.shots.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = {"MAE encoder": args.mae, "random init (same architecture)": str(random_twin(args.mae, Path(tmp)))}
        if args.supervised:
            rows["supervised encoder"] = args.supervised
        results = {
            name: fewshot_evaluate(
                path, args.data, shots, args.seeds, test_limit=args.test_limit, device=args.device, num_workers=0
            )  # fmt: skip
            for name, path in rows.items()
        }
    print("| encoder | " + " | ".join(f"{k}-shot" for k in shots) + " |")
    print("|---|" + "---|" * len(shots))
    for name, res in results.items():
        cells = " | ".join(f"{100 * res.mean(k):.1f} ± {100 * res.std(k):.1f}" for k in shots)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
