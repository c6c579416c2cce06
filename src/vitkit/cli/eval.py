"""``vitkit eval``: top-1/top-5, per-class accuracy and a confusion-matrix PNG of a checkpoint on a split."""

from __future__ import annotations

import argparse
import json

from vitkit.cli.fastpath import add_fast_path_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1/top-5, per-class accuracy, confusion matrix")
    p.add_argument("--checkpoint", required=True, help="model.safetensors of a run, a training checkpoint, ...")
    p.add_argument("--data", required=True, help="dataset name (cifar10) or path")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--limit", type=int, help="evaluate a seeded random subset of this many images")
    p.add_argument("--img-size", type=int, help="evaluate at this resolution (position embeddings resampled)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", help="folder for metrics.json and confusion.png (default: next to the checkpoint)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_fast_path_arguments(p, default="auto", int8_calibration="train images")
    p.add_argument(
        "--antispoof", action="store_true", help="live/spoof data: APCER per attack, BPCER, ACER, HTER, EER, AUC, plots"
    )
    p.add_argument("--dev-split", default="dev", help="--antispoof: split that fixes the threshold (default dev)")
    p.add_argument("--threshold", default="eer", help="--antispoof: 'eer' or 'bpcer=0.05' on the dev split")
    p.add_argument("--adapters", help="adapter file (or peft folder) to put onto the checkpoint first")
    p.set_defaults(func=run)


def default_out(checkpoint: str, name: str) -> str:
    """``name`` beside a checkpoint file or folder; for a hub or registry name (no such path), ``name`` under the
    current folder with the name in it, not a folder named after the hub's organisation."""
    from pathlib import Path

    path = Path(checkpoint)
    if path.exists():
        return str(path.parent / name)
    return f"{name}-{checkpoint.replace(':', '-').replace('/', '-')}"


def run_antispoof(args: argparse.Namespace) -> int:

    from vitkit.eval.antispoof_eval import evaluate_antispoof

    out = args.out or default_out(args.checkpoint, f"antispoof-{args.split}")
    metrics = evaluate_antispoof(
        args.checkpoint, args.data, dev_split=args.dev_split, test_split=args.split, threshold=args.threshold,
        adapters=args.adapters, batch_size=args.batch_size, device=args.device, num_workers=args.workers,
        out_dir=out,
    )  # fmt: skip
    print(json.dumps(metrics.to_dict(), indent=1) if args.json else metrics.format())
    print(f"wrote {out}/antispoof.json, {out}/roc.png and {out}/det.png")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.antispoof:
        return run_antispoof(args)
    from pathlib import Path

    from vitkit.eval import evaluate

    out = args.out or default_out(args.checkpoint, f"eval-{args.split}")
    result = evaluate(
        args.checkpoint, args.data, args.split, batch_size=args.batch_size, device=args.device,
        num_workers=args.workers, limit=args.limit, img_size=args.img_size, out_dir=out, adapters=args.adapters,
        precision=args.precision, compile=args.compile,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result.brief(), indent=1))
        return 0
    print(result.format())
    print(f"wrote {', '.join(str(Path(out) / f.name) for f in sorted(Path(out).iterdir()))}")
    return 0
