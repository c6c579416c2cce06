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
    print(f"{'name':<{width}}  {'family':<8}  {'params':>13}  {'image':>9}  {'patch':>5}  {'width':>5}  {'depth':>5}")
    for name in names:
        cfg = get_config(name)
        img = getattr(cfg, "img_size", None)
        size = f"{img[0]}x{img[1]}" if isinstance(img, tuple) else str(img or "-")
        cells = [_cell(cfg, key) for key in ("patch_stride", "embed_dim", "depth")]
        print(f"{name:<{width}}  {cfg.family:<8}  {count_parameters(cfg):>13,}  {size:>9}  {cells[0]:>5}  "
              f"{cells[1]:>5}  {cells[2]:>5}")  # fmt: skip
    return 0


def _cell(cfg: object, key: str) -> str:
    """A config field for the table, whatever the family calls it: first entry of a pair, sum of a per-stage list."""
    value = getattr(cfg, key, None)
    if value is None and key == "patch_stride":
        value = getattr(cfg, "patch_size", None)
    if value is None and key == "depth":
        value = getattr(cfg, "depths", None)  # Swin: blocks per stage, summed below
    if isinstance(value, (tuple, list)):
        value = value[0] if key != "depth" else sum(value)
    return "-" if value is None else str(value)
