"""``vitkit train``: train a ViT from a YAML recipe (also under ``torchrun ... -m vitkit train``)."""

from __future__ import annotations

import argparse


def add_recipe_args(p: argparse.ArgumentParser, config_required: bool = True) -> None:
    """The recipe options shared by ``train`` and ``finetune``."""
    p.add_argument(
        "--config",
        required=config_required,
        help="recipe: a shipped recipe's name (vitkit recipes lists them, e.g. cifar10_vit) or a YAML file",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a recipe value, typed by its field (repeatable), e.g. --set optim.lr=3e-4",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="PATH",
        help="continue the run folder's last checkpoint, or the checkpoint / run folder PATH",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a YAML recipe (see recipes/)")
    add_recipe_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.train import load_recipe, train_model

    result = train_model(load_recipe(args.config, args.overrides), resume=args.resume)
    print_result(result)
    return 0


def print_result(result) -> None:
    from vitkit.tasks import task_of
    from vitkit.train.runlog import format_number

    if result.final_eval is not None:  # the task's report: its numbers, as the metrics rows have them
        percentages = task_of(result.model).percentages
        print("final: " + "  ".join(format_number(k, v, percentages) for k, v in result.final_eval.numbers().items()))
    if result.run_dir is not None:
        weights = "adapters" if (result.run_dir / "adapters.safetensors").is_file() else "model"
        print(f"run folder: {result.run_dir} ({weights}.safetensors, checkpoints/, metrics.jsonl, plots/)")
