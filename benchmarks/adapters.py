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

``--steps N`` trains each method for N steps instead and reports top-1 on the recipe's evaluation split alone
(the spoof set's dev split: test stays untouched), for choosing learning rates and for diagnostics such as
``full-no-stem`` (everything but the stem trains) and ``lora+stem-weights`` (LoRA plus the whole stem):

    python benchmarks/adapters.py --task spoof --checkpoint runs/cifar10_vit/model.safetensors --steps 200 \
        --methods full,full-no-stem,lora+stem-weights,lora,lora+stem --lr 3e-3 --lr-full 1e-3

``bottleneck+head-adapter`` is the adapter section of the ViT-B/16 anti-spoofing recipe
(``adapter_spoof_b16_bottleneck``: a bottleneck after each block's MLP and one between the encoder and the head),
applied to the given backbone, for comparing that setup with ``lora+stem`` at equal wall time:

    python benchmarks/adapters.py --task spoof --checkpoint runs/cifar10_vit/model.safetensors --minutes 5 \
        --methods lora+stem,bottleneck+head-adapter
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
# label -> adapter section; "full" trains everything (method none). The last two are diagnostics (--steps).
METHODS = {
    "head": {"method": "head"},
    "bottleneck": {"method": "bottleneck"},
    "parallel": {"method": "parallel"},
    "lora": {"method": "lora"},
    "lora+mlp": {"method": "lora", "lora_mlp": True},
    "prompt": {"method": "prompt", "deep": True},
    "lora+stem": {"method": "lora", "stem_rank": 8},
    "parallel+stem": {"method": "parallel", "stem_rank": 8},
    "full": {"method": "none"},
    "full-no-stem": {"method": "head", "trainable": ["head", "blocks", "norm", "pos_embed", "cls_token"]},
    "lora+stem-weights": {"method": "lora", "trainable": ["head", "patch_embed"]},
    "bottleneck+head-adapter": "adapter_spoof_b16_bottleneck",  # that recipe's adapter section
}
DEFAULT = "head,bottleneck,parallel,lora,prompt,lora+stem,full"
FULL_RATE = {"full", "full-no-stem"}  # labels that train the base weights themselves take --lr-full


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(RECIPES), required=True)
    p.add_argument("--checkpoint", required=True, help="the pre-trained model every method starts from")
    p.add_argument("--data", help="data set folder (default: the recipe's data.dataset)")
    p.add_argument("--minutes", type=float, default=5.0, help="wall-time budget of each method (train.max_minutes)")
    p.add_argument("--steps", type=int, help="train each method for this many steps instead of --minutes")
    p.add_argument("--methods", default=DEFAULT, help=f"comma-separated, from {list(METHODS)}")
    # Rates chosen at 200 steps on the spoof dev split (docs/benchmarks.md, "## Adapters").
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW rate for head-only and adapters")
    p.add_argument("--lr-full", type=float, default=1e-3, help="AdamW rate for full fine-tuning")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_adapters"), help="run folders and results.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra recipe overrides")
    return p.parse_args(argv)


def _file_size(run_dir: Path) -> tuple[str, int]:
    for name in ("adapters.safetensors", "model.safetensors"):
        if (run_dir / name).is_file():
            return name, (run_dir / name).stat().st_size
    return "-", 0


def adapter_section(label: str) -> dict:
    """The adapter fields a label sets: its own, or (a recipe name) that recipe's whole adapter section."""
    entry = METHODS[label]
    if isinstance(entry, dict):
        return entry
    from vitkit.train import load_recipe
    from vitkit.train.catalog import resolve_recipe

    return load_recipe(resolve_recipe(entry)).adapter.to_dict()


def run_method(args: argparse.Namespace, label: str) -> dict:
    from vitkit.adapters import trainable_parameters
    from vitkit.train import finetune, load_recipe

    section = adapter_section(label)
    lr = args.lr_full if label in FULL_RATE else args.lr
    length = [f"train.max_minutes={args.minutes}"] if args.steps is None else \
        ["train.max_minutes=null", f"train.max_steps={args.steps}"]  # fmt: skip
    section = {"stem_rank": 0, "head_adapter": 0, **section}  # the recipe's add-ons only where the label asks
    overrides = [f"adapter.{k}={json.dumps(v)}" for k, v in section.items()]
    overrides += [*length, f"train.output_dir={args.out}", f"train.run_name={args.task}_{label}", f"optim.lr={lr}",
                  *args.overrides]  # fmt: skip
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
           "wall_s": wall, "file": name, "bytes": size, "steps": result.global_step, "lr": lr}  # fmt: skip
    if args.steps is not None:  # rate choice and diagnostics: the evaluation split only
        row["eval_top1"] = result.final_eval.top1
    elif args.task == "spoof":
        from vitkit.eval.antispoof_eval import evaluate_antispoof

        m = evaluate_antispoof(model, recipe.data.dataset, num_workers=0, out_dir=result.run_dir / "antispoof")
        row.update(acer=m.acer, eer=m.eer, auc=m.auc, apcer=m.apcer, bpcer=m.bpcer)
    else:
        row["top1"] = result.final_eval.top1 if result.final_eval is not None else float("nan")
    return row


def _threads(args: argparse.Namespace) -> str:
    """The runs' thread count: a train.threads override, else the process's (the engine restores it after)."""
    given = [o.split("=", 1)[1] for o in args.overrides if o.startswith("train.threads=")]
    return given[-1] if given else str(torch.get_num_threads())


def table(rows: list[dict], task: str) -> str:
    if "eval_top1" in rows[0]:
        head = "| method | trainable params | share | lr | eval top-1 | wall time | steps | saved file |"
        fmt = lambda r: f"{r['lr']:g} | {100 * r['eval_top1']:.2f}%"
    elif task == "spoof":
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
        print(f"== {label} ({args.minutes:g} min)" if args.steps is None else f"== {label} ({args.steps} steps)",
              file=sys.stderr)  # fmt: skip
        rows.append(run_method(args, label))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.steps is None else f"_{args.steps}steps"
    (out / f"results_{args.task}{suffix}.json").write_text(json.dumps(rows, indent=1) + "\n")
    length = f"{args.minutes:g} min" if args.steps is None else f"{args.steps} steps"
    print(f"task {args.task}, {length} each, from {args.checkpoint}; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {_threads(args)} threads")  # fmt: skip
    print(table(rows, args.task))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
