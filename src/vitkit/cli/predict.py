"""``vitkit predict``: top-k labels for image files."""

from __future__ import annotations

import argparse
import json

from vitkit.cli.fastpath import add_fast_path_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files with a checkpoint")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="one JSON document with every image's top-k")
    add_fast_path_arguments(p, default="fp32", int8_calibration="the images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.eval import predict

    predictions = predict(
        args.images, args.checkpoint, args.topk, device=args.device, precision=args.precision, compile=args.compile
    )
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=1))
        return 0
    for p in predictions:
        print(p.path)
        for label, prob in zip(p.labels, p.probs):
            print(f"  {100 * prob:6.2f}%  {label}")
    return 0
