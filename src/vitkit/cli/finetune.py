"""``vitkit finetune``: fine-tune a pre-trained checkpoint, optionally at a new resolution (paper Sec. 3.2)."""

from __future__ import annotations

import argparse

from vitkit.cli.train import add_recipe_args, print_result


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune a checkpoint (anything load_pretrained reads) with a recipe, at any resolution"
    )
    p.add_argument("--checkpoint", required=True, help="weights to start from, e.g. runs/cifar10_vit/model.safetensors")
    add_recipe_args(p)
    p.add_argument("--img-size", type=int, help="fine-tuning resolution; position embeddings are resampled to it")
    p.add_argument("--data", help="dataset name or path (sets data.dataset)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.train import finetune, load_recipe

    overrides = list(args.overrides) + ([f"data.dataset={args.data}"] if args.data else [])
    result = finetune(args.checkpoint, load_recipe(args.config, overrides), img_size=args.img_size, resume=args.resume)
    print_result(result)
    return 0
