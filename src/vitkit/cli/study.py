"""``vitkit study NAME``: run one of the paper's studies to its table and pictures (``vitkit study --list``)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="train what a study of the paper's claims needs and write its table and plots (--list names them)",
        description="Each study trains its runs under a stated budget, writes OUT/results.csv, results.md and PNGs, "
        "and continues where it stopped when run again.",
    )
    p.add_argument("name", nargs="?", help="the study (vitkit study --list)")
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--quick", action="store_true", help="the minutes-long version (tiny models, few steps)")
    p.add_argument("--out", help="the study folder (default studies/NAME)")
    p.add_argument("--data", help="an image folder with train/ and test/ (default: CIFAR-10 under ../shared/data)")
    p.add_argument("--jobs", type=int, help="runs at once (default: one per GPU, else one per CPU core)")
    p.add_argument("--threads", type=int, help="CPU threads per run (default: the cores shared out over the jobs)")
    p.add_argument("--device", default="auto", help="auto (the GPUs when there are any), cpu or cuda")
    p.add_argument("--plan", action="store_true", help="print the runs and the runtime estimate, then stop")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", dest="fresh", action="store_false", help="continue the study in OUT (default)")
    group.add_argument("--fresh", dest="fresh", action="store_true", help="delete the earlier study in OUT first")
    p.set_defaults(func=run, fresh=False)


def run(args: argparse.Namespace) -> int:
    from vitkit.studies import list_studies, run_study

    if args.list or not args.name:
        for study in list_studies():
            runtime = f" [{study.runtime.split(' (')[0]}]" if study.runtime else ""
            print(f"{study.name:<16} {study.summary}{runtime}")
        return 0
    try:
        result = run_study(args.name, quick=args.quick, out=args.out, data=args.data, jobs=args.jobs,
                           threads=args.threads, device=args.device, fresh=args.fresh, plan_only=args.plan)  # fmt: skip
    except KeyboardInterrupt:
        print("vitkit study: stopped; run the same command to continue (finished runs are kept, the others resume "
              "from their last checkpoint)", file=sys.stderr)  # fmt: skip
        return 130
    if not args.plan:
        print(f"study folder: {result.out} ({', '.join(p.name for p in result.files)})")
    return 0
