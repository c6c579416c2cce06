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
    m = actions.add_parser("make-spoof", help="build the stand-in live/spoof set (print/replay attacks) from photos")
    m.add_argument("src", help="folder of real photos (e.g. ../shared/data/cifar10/train)")
    m.add_argument("out", help="output folder: train/dev/test, each live/ and spoof/<attack_type>/")
    m.add_argument("--num", type=int, default=6000, help="source photos to use (default 6000; 0: all)")
    m.add_argument("--size", type=int, default=32, help="output image size in pixels (default 32)")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=run_make_spoof)
    g = actions.add_parser("make-seg", help="build seg_synth, the procedural stand-in for ADE20K (scenes + masks)")
    g.add_argument("out", help="output folder: images/ and annotations/ {training,validation}, seg_synth.json")
    g.add_argument("--train", type=int, default=2000, help="training scenes (default 2000)")
    g.add_argument("--val", type=int, default=500, help="validation scenes (default 500)")
    g.add_argument("--size", type=int, default=256, help="short side in pixels (default 256)")
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=run_make_seg)
    c = actions.add_parser("make-corrupt", help="copy an image folder with CIFAR-10-C-style corruptions")
    c.add_argument("src", help="image folder to copy (its whole tree, e.g. a data set with train/ and test/)")
    c.add_argument("out", help="output folder (same relative paths, PNG)")
    c.add_argument("--severity", type=int, default=5, help="1..5 (default 5, the strongest)")
    c.add_argument("--corruptions", default=None, help="comma-separated names (default: all)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=run_make_corrupt)


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


def run_make_spoof(args: argparse.Namespace) -> int:
    from vitkit.data.spoof import make_spoof

    print(make_spoof(args.src, args.out, num_photos=args.num or None, size=args.size, seed=args.seed).format())
    return 0


def run_make_seg(args: argparse.Namespace) -> int:
    from vitkit.data.seg_synth import make_seg

    print(make_seg(args.out, train=args.train, val=args.val, size=args.size, seed=args.seed).format())
    return 0


def run_make_corrupt(args: argparse.Namespace) -> int:
    from vitkit.data.corruptions import make_corrupted

    names = args.corruptions.split(",") if args.corruptions else None
    count = make_corrupted(args.src, args.out, severity=args.severity, names=names, seed=args.seed)
    print(f"wrote {count} corrupted images (severity {args.severity}) to {args.out}")
    return 0
