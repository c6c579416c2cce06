"""``vitkit visualize``: the paper's pictures of a model (attention, rollout, distances, embeddings) as PNGs."""

from __future__ import annotations

import argparse

from vitkit.viz import KINDS  # torch-only; matplotlib loads when the command runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "visualize",
        help="draw attention maps, rollout, attention distance, position-embedding similarity or filters",
        description="Draw what a ViT learned, as in Dosovitskiy et al. (2020), Fig. 6-7, and write PNGs to --out.",
    )
    p.add_argument("checkpoint", help="a checkpoint load_pretrained reads, or a registered model name (random weights)")
    p.add_argument("images", nargs="*", help="image files or folders (needed by rollout, heads and distance)")
    p.add_argument(
        "--kind",
        action="append",
        choices=(*KINDS, "all"),
        help="what to draw; repeat for several, 'all' for every kind (default: rollout; heads with --point)",
    )
    p.add_argument("--layer", type=int, help="1-based layer (-1 = last): heads of this layer, rollout up to it")
    p.add_argument(
        "--img-size", type=_size, metavar="PX|HxW", help="input size, any multiple of the patch (default: the model's)"
    )
    p.add_argument(
        "--point",
        type=_point,
        metavar="Y,X",
        help="input pixel whose token's attention each head draws (default layer: the last): over the image in a ViT, "
        "in its window in a Swin",
    )
    p.add_argument("--adapters", help="adapter file (or peft folder) to put onto the checkpoint first")
    p.add_argument("--mask-ratio", type=float, help="reconstruction (MAE): share of patches hidden (default: 0.75)")
    p.add_argument("--head-fusion", choices=("mean", "max", "min"), default="mean", help="rollout head fusion")
    p.add_argument("--max-images", type=int, default=128, help="at most this many images (default 128)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--dpi", type=int, default=100)
    p.add_argument("--out", default="viz", help="output folder (default: ./viz)")
    p.set_defaults(func=run)


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"expected a size like 224 or 224x320, got {text!r}")
    return (parts[0], parts[-1])


def _point(text: str) -> tuple[int, int]:
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a pixel as Y,X (e.g. 112,80), got {text!r}") from None
    return (y, x)


def run(args: argparse.Namespace) -> int:
    from vitkit.viz.draw import visualize

    kinds = "all" if "all" in (args.kind or []) else args.kind  # None: the library's default
    paths = visualize(
        args.checkpoint,
        args.images,
        kinds,
        args.out,
        layer=args.layer,
        img_size=args.img_size,
        head_fusion=args.head_fusion,
        max_images=args.max_images,
        batch_size=args.batch_size,
        device=args.device,
        dpi=args.dpi,
        mask_ratio=args.mask_ratio,
        point=args.point,
        adapters=args.adapters,
    )
    for path in paths:
        print(path)
    return 0
