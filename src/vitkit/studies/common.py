"""What the studies share: the three models compared, the data they train on and the recipe every run starts from.

The models are the paper's three kinds at CIFAR scale (32x32 images), sized alike in parameters (about 0.3M each):

* ``vit``: a plain ViT with 4x4 patches (an 8x8 grid of 64 tokens), width 64, depth 6, 2 heads, MLP 256;
* ``hybrid``: the same transformer on a convolutional stem (3x3 convs of 16, 32, 64, 64 channels, strides 1, 2,
  1, 2, then a 1x1 projection; Xiao et al. 2021), the CIFAR form of the paper's ResNet + ViT hybrid (Sec. 3.1);
* ``resnet``: a pre-activation ResNet-20 (3 stages x 3 basic units, 16-32-64 wide) with BiT's GroupNorm and
  weight standardisation, the paper's ResNet (BiT) family at CIFAR size.

All train with the same recipe, as the paper trains ViT and BiT alike with Adam (Sec. 4.1): AdamW at 1e-3,
weight decay 0.05, batch 128, a cosine schedule with 5% warm-up, label smoothing 0.1, and the standard CIFAR
augmentation (4-pixel padded random crop and horizontal flip). ``--quick`` swaps in tiny versions of each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitkit.train.recipe import Recipe, recipe_from_dict

BATCH = 128
FINAL_ONLY = 1_000_000  # train.eval_every_epochs that evaluates only at the end of the run
IMG_SIZE = 32


@dataclass(frozen=True)
class ModelChoice:
    """A model of the studies: its table label, a description, and its recipe ``model:`` section (full, quick)."""

    role: str
    label: str
    description: str
    full: dict[str, Any]
    quick: dict[str, Any]
    quick_description: str = ""

    def describe(self, quick: bool) -> str:
        return self.quick_description if quick else self.description

    def section(self, quick: bool, **changes: Any) -> dict[str, Any]:
        return {**(self.quick if quick else self.full), **changes}


_VIT = dict(embed_dim=64, depth=6, num_heads=2, mlp_dim=256)
_VIT_QUICK = dict(embed_dim=32, depth=2, num_heads=2, mlp_dim=64)

MODELS: dict[str, ModelChoice] = {
    "vit": ModelChoice(
        "vit",
        "ViT",
        "plain ViT, 4x4 patches (8x8 grid), width 64, depth 6, 2 heads, MLP 256",
        {"name": "vit_tiny_patch4_32", **_VIT},
        {"name": "vit_tiny_patch4_32", **_VIT_QUICK},
        "tiny plain ViT (--quick): 4x4 patches, width 32, depth 2",
    ),
    "hybrid": ModelChoice(
        "hybrid",
        "hybrid (conv stem + ViT)",
        "the same ViT on a conv stem (3x3 convs 16-32-64-64, strides 1-2-1-2, 1x1 projection) instead of patches",
        {"name": "vit_cifar_convstem_32", **_VIT, "stem_channels": [16, 32, 64, 64]},
        {"name": "vit_cifar_convstem_32", **_VIT_QUICK, "stem_channels": [8, 16, 32, 32]},
        "the tiny ViT on a conv stem (--quick): 3x3 convs 8-16-32-32",
    ),
    "resnet": ModelChoice(
        "resnet",
        "ResNet-20",
        "pre-activation ResNet-20 (3 stages x 3 basic units, 16-32-64 wide), GroupNorm + weight standardisation",
        {"name": "resnet_cifar20"},
        {"name": "resnet_cifar20", "layers": [1, 1, 1], "width": 8},
        "tiny pre-activation ResNet (--quick): 3 stages x 1 unit, 8-16-32 wide",
    ),
}


def resolve_data(path: str | os.PathLike | None) -> Path:
    """The data folder of a study: ``path``, else CIFAR-10 where vitkit finds it (../shared/data/cifar10, ./data,
    $VITKIT_DATA). Raises one line naming the fix when there is none."""
    from vitkit.data.named import data_roots, find_named

    hint = "an image folder with train/<class>/ and test/<class>/ (CIFAR-10 layout)"
    if path is None:
        found = find_named("cifar10", data_roots())
        if found is None:
            raise FileNotFoundError(
                f"no CIFAR-10 found under ../shared/data, ./data or $VITKIT_DATA; pass --data PATH, {hint}"
            )
        return found.absolute()
    from vitkit.data.sources import SPLIT_DIRS, is_cifar_dir

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--data {path} does not exist; pass {hint}")
    for split in ("train", "test"):
        if not is_cifar_dir(path) and not any((path / n).is_dir() or (path / f"{n}.csv").is_file()
                                              for n in SPLIT_DIRS[split]):  # fmt: skip
            raise FileNotFoundError(f"--data {path} has no {split}/ folder; pass {hint}")
    return path.absolute()


def data_section(data: Path, cache: bool = True) -> dict[str, Any]:
    """The recipe ``data:`` section every study run shares (decoded once into memory, cached on disk)."""
    return {
        "dataset": str(data),
        "img_size": IMG_SIZE,
        "crop_pct": 1.0,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "train_crop": "pad",
        "padding": 4,
        "hflip": 0.5,
        "label_smoothing": 0.1,
        "in_memory": True,
        "cache": cache,
        "num_workers": 0,
    }


def study_recipe(
    name: str,
    model: dict[str, Any],
    data: Path,
    runs_dir: Path,
    steps: int,
    *,
    cache: bool = True,
    eval_every_epochs: int = FINAL_ONLY,
    log_every_steps: int | None = None,
    checkpoint_every_steps: int | None = None,
    **train: Any,
) -> Recipe:
    """A run's recipe: ``model`` (a recipe ``model:`` section) trained ``steps`` optimiser steps at batch 128 with
    the studies' shared optimiser, schedule and augmentation; ``train`` sets further ``train.*`` keys."""
    log_every = log_every_steps or max(1, min(50, steps // 40))
    checkpoint_every = checkpoint_every_steps or max(log_every, steps // 10)
    return recipe_from_dict(
        {
            "name": name,
            "model": dict(model),
            "data": data_section(data, cache),
            "optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05},
            "schedule": {"decay": "cosine", "warmup_fraction": 0.05, "min_lr": 1e-5},
            "train": {
                "epochs": FINAL_ONLY,  # max_steps decides the length
                "max_steps": steps,
                "batch_size": BATCH,
                "precision": "auto",
                "eval_every_epochs": eval_every_epochs,
                "eval_batch_size": 500,
                "checkpoint_every_steps": checkpoint_every,
                "log_every_steps": log_every,
                "progress": False,
                "seed": 0,
                "output_dir": str(runs_dir),
                "run_name": name,
                **train,
            },
        }
    )


def percent(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"
