"""``vitkit data inspect``: class counts, image-size histogram and PNG grids of plain and augmented samples."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect data sets")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser("inspect", help="class counts, image sizes, and grids of samples before/after augmentation")
    q.add_argument("root", help="image folder, CIFAR pickle folder, CSV list, or a named data set (cifar10, cifar100)")
    q.add_argument("--out", default=None, help="folder for samples.png and augmented.png (default: no images)")
    q.add_argument("--data-root", default=None, help="where named data sets are looked for first")
    q.add_argument("--num", type=int, default=32, help="samples per grid (default 32)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--img-size", type=int, default=None, help="augmented sample size (default: the images' own)")
    q.add_argument("--train-crop", choices=("rrc", "pad"), default="rrc")
    q.add_argument("--randaugment", default="rand-m9-n2", help="RandAugment spec, or 'none'")
    q.add_argument("--trivialaugment", action="store_true", help="TrivialAugment instead of RandAugment")
    q.add_argument("--random-erasing", type=float, default=0.25)
    q.add_argument("--mixup", type=float, default=0.8, help="Mixup alpha (0: off)")
    q.add_argument("--cutmix", type=float, default=1.0, help="CutMix alpha (0: off)")
    q.add_argument("--no-download", action="store_true", help="never download a named data set")
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.data.inspection import inspect_dataset

    randaugment = None if args.trivialaugment or args.randaugment.lower() == "none" else args.randaugment
    report = inspect_dataset(
        args.root,
        args.out,
        data_root=args.data_root,
        download=not args.no_download,
        img_size=args.img_size,
        augment={
            "train_crop": args.train_crop,
            "randaugment": randaugment,
            "trivialaugment": args.trivialaugment,
            "random_erasing": args.random_erasing,
            "mixup_alpha": args.mixup,
            "cutmix_alpha": args.cutmix,
        },
        num_samples=args.num,
        seed=args.seed,
    )
    print(report.format())
    return 0
