"""``vitkit predict``: what a checkpoint's task answers for image files (a classifier's top-k labels; a segmentor's
label maps and overlays, written to ``--out``)."""

from __future__ import annotations

import argparse
import json

from vitkit.cli.fastpath import add_fast_path_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify or segment image files with a checkpoint")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--topk", type=int, default=5, help="classifiers: how many labels per image")
    p.add_argument("--out", help="segmentors: folder for <stem>_mask.png (class ids) and <stem>_overlay.png")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="one JSON document with every image's answer")
    add_fast_path_arguments(p, default="fp32", int8_calibration="the images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.eval import predict

    answers = predict(
        args.images, args.checkpoint, args.topk, device=args.device, precision=args.precision, compile=args.compile,
        out_dir=args.out,
    )  # fmt: skip
    if args.json:
        print(json.dumps([a.to_dict() for a in answers], indent=1))
        return 0
    for answer in answers:
        print(answer.format())
    return 0
