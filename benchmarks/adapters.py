"""Parameter-efficient fine-tuning compared: head only, each adapter method, and full fine-tuning, each given the
same wall time from the same checkpoint, on one task.

Each method runs ``vitkit.finetune`` with the task's recipe, ``adapter.method`` set and ``train.max_minutes`` the
same for all; the table lists trainable parameters (and their share of the model), the task metric (top-1 on
the evaluation split for classification, ACER / EER / AUC on test at the dev EER threshold for anti-spoofing),
the measured wall time and the size of what the run saves (``adapters.safetensors`` or ``model.safetensors``).

    vitkit data make-spoof ../shared/data/cifar10/train data/spoof
    python benchmarks/adapters.py --task spoof --checkpoint runs/cifar10_vit/model.safetensors --minutes 5
    vitkit data make-corrupt ../shared/data/cifar10 data/cifar10c --severity 5
    python benchmarks/adapters.py --task shift --checkpoint runs/cifar10_vit/model.safetensors --minutes 5
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"spoof": "adapter_spoof", "shift": "adapter_cifar10c"}  # named recipes (recipes/ or the package's)
# label -> adapter section; "full" trains everything (method none).
METHODS = {
    "head": {"method": "head"},
    "bottleneck": {"method": "bottleneck"},
    "parallel": {"method": "parallel"},
    "lora": {"method": "lora"},
    "lora+mlp": {"method": "lora", "lora_mlp": True},
    "prompt": {"method": "prompt", "deep": True},
    "full": {"method": "none"},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(RECIPES), required=True)
    p.add_argument("--checkpoint", required=True, help="the pre-trained model every method starts from")
    p.add_argument("--data", help="data set folder (default: the recipe's data.dataset)")
    p.add_argument("--minutes", type=float, default=5.0, help="wall-time budget of each method (train.max_minutes)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {list(METHODS)}")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW rate for head-only and adapters")
    p.add_argument("--lr-full", type=float, default=3e-4, help="AdamW rate for full fine-tuning")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_adapters"), help="run folders and results.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra recipe overrides")
    return p.parse_args(argv)


def _file_size(run_dir: Path) -> tuple[str, int]:
    for name in ("adapters.safetensors", "model.safetensors"):
        if (run_dir / name).is_file():
            return name, (run_dir / name).stat().st_size
    return "-", 0


def run_method(args: argparse.Namespace, label: str) -> dict:
    from vitkit.adapters import trainable_parameters
    from vitkit.train import finetune, load_recipe

    section = METHODS[label]
    lr = args.lr_full if section["method"] == "none" else args.lr
    overrides = [f"adapter.{k}={json.dumps(v)}" for k, v in section.items()]
    overrides += [f"train.max_minutes={args.minutes}", f"train.output_dir={args.out}",
                  f"train.run_name={args.task}_{label}", f"optim.lr={lr}", *args.overrides]  # fmt: skip
    if args.data:
        overrides.append(f"data.dataset={args.data}")
    from vitkit.train.catalog import resolve_recipe

    recipe = load_recipe(resolve_recipe(RECIPES[args.task]), overrides)
    start = time.perf_counter()
    result = finetune(args.checkpoint, recipe)
    wall = time.perf_counter() - start
    model = result.ema_model or result.model
    report = trainable_parameters(model)
    name, size = _file_size(result.run_dir)
    row = {"method": label, "trainable": report.trainable, "total": report.total, "share": report.share,
           "wall_s": wall, "file": name, "bytes": size, "steps": result.global_step}  # fmt: skip
    if args.task == "spoof":
        from vitkit.eval.antispoof_eval import evaluate_antispoof

        m = evaluate_antispoof(model, recipe.data.dataset, num_workers=0, out_dir=result.run_dir / "antispoof")
        row.update(acer=m.acer, eer=m.eer, auc=m.auc, apcer=m.apcer, bpcer=m.bpcer)
    else:
        row["top1"] = result.final_eval.top1 if result.final_eval is not None else float("nan")
    return row


def table(rows: list[dict], task: str) -> str:
    if task == "spoof":
        head = "| method | trainable params | share | ACER | EER | ROC AUC | wall time | steps | saved file |"
        fmt = lambda r: f"{100 * r['acer']:.2f}% | {100 * r['eer']:.2f}% | {r['auc']:.4f}"
    else:
        head = "| method | trainable params | share | top-1 | wall time | steps | saved file |"
        fmt = lambda r: f"{100 * r['top1']:.2f}%"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['trainable']:,} | {100 * r['share']:.2f}% | {fmt(r)} | {r['wall_s']:.0f} s | "
            f"{r['steps']} | {r['file']} {r['bytes'] / 1024:.1f} KiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    labels = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in labels if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    rows = []
    for label in labels:
        print(f"== {label} ({args.minutes:g} min)", file=sys.stderr)
        rows.append(run_method(args, label))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results_{args.task}.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"task {args.task}, {args.minutes:g} min each, from {args.checkpoint}; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")  # fmt: skip
    print(table(rows, args.task))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
