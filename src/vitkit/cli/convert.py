"""``vitkit convert``: rewrite a checkpoint in vitkit's, Hugging Face's or timm's format."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a checkpoint (vitkit, timm, Hugging Face, JAX .npz) to vitkit, hf or timm",
        description="Read SRC in any supported format (detected from its contents) and write DST. "
        "--to hf writes a folder that transformers' ViTForImageClassification.from_pretrained opens.",
    )
    p.add_argument("src", metavar="SRC", help="checkpoint file or folder")
    p.add_argument("dst", metavar="DST", help="output file (vitkit, timm) or folder (hf)")
    p.add_argument("--to", choices=("vitkit", "hf", "timm"), default="vitkit", help="output format (default vitkit)")
    p.add_argument("--model", help="registry name for what a timm file cannot tell (heads), e.g. vit_small_patch16_224")
    p.add_argument("--num-classes", type=int, help="replace the head with a zero-initialised one of this size")
    p.add_argument("--img-size", type=int, help="resample the position embeddings for this image size")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.weights import convert_checkpoint, log_progress

    log_progress()
    overrides = {k: v for k, v in (("num_classes", args.num_classes), ("img_size", args.img_size)) if v is not None}
    out = convert_checkpoint(args.src, args.dst, to=args.to, model=args.model, **overrides)
    print(f"wrote {out} ({args.to})")
    return 0
