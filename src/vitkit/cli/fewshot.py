"""``vitkit fewshot``: the paper's few-shot linear evaluation of frozen features."""

from __future__ import annotations

import argparse
import json


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 1,5,10,25; got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fewshot", help="few-shot linear evaluation (closed-form least squares on frozen features)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="dataset name (cifar10) or path with train and test splits")
    p.add_argument("--shots", type=_ints, default=[1, 5, 10, 25], help="images per class, e.g. 1,5,10,25")
    p.add_argument("--seeds", type=int, default=3, help="number of random draws per shot count")
    p.add_argument("--l2-reg", type=float, default=1024.0, help="ridge strength (big_vision uses 2^10)")
    p.add_argument("--test-limit", type=int, help="use a seeded subset of the test split of this size")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.eval import fewshot_evaluate

    result = fewshot_evaluate(
        args.checkpoint, args.data, args.shots, args.seeds, args.l2_reg, test_limit=args.test_limit,
        batch_size=args.batch_size, device=args.device, num_workers=args.workers,
    )  # fmt: skip
    print(json.dumps(result.to_dict(), indent=1) if args.json else result.table())
    return 0
