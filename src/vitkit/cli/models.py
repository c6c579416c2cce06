"""``vitkit models``: the registry with parameter counts."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models with their parameter counts")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'vit_base*'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.registry import count_parameters, get_config, list_models

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}")
        return 1
    width = max(len(n) for n in names)
    print(f"{'name':<{width}}  {'params':>13}  {'image':>9}  {'patch':>5}  {'width':>5}  {'depth':>5}  {'heads':>5}")
    for name in names:
        cfg = get_config(name)
        size = f"{cfg.img_size[0]}x{cfg.img_size[1]}"
        print(
            f"{name:<{width}}  {count_parameters(cfg):>13,}  {size:>9}  {cfg.patch_stride[0]:>5}  "
            f"{cfg.embed_dim:>5}  {cfg.depth:>5}  {cfg.num_heads:>5}"
        )
    return 0
