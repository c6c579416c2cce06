"""From a recipe to a trained model: data, model, run folder, engine, exported weights.

``train_model(recipe)`` is what ``vitkit train`` calls; ``finetune(checkpoint, recipe)`` is the same with the
model taken from a checkpoint (any format ``vitkit.load_pretrained`` reads), its head reset to the data's classes
and its position embeddings resampled to the new resolution (paper Sec. 3.2).
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitkit.train import distributed as dist_utils
from vitkit.train.loop import Trainer, TrainResult
from vitkit.train.recipe import Recipe, dump_recipe
from vitkit.train.state import atomic_write_text, find_resume_checkpoint, load_checkpoint


class SubsetDataset(torch.utils.data.Dataset):
    """A fixed subset of a dataset that keeps ``classes`` and ``targets`` (for quick runs and tests)."""

    def __init__(self, dataset, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)
        self.classes = list(getattr(dataset, "classes", []))
        targets = getattr(dataset, "targets", None)
        self.targets = [targets[i] for i in self.indices] if targets is not None else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        from vitkit.data.loader import SeededIndex

        index = self.indices[i]
        # Keep the per-sample seed the loader attached, so a run is the same with any number of workers.
        return self.dataset[SeededIndex(index, i.seed) if isinstance(i, SeededIndex) else index]


def seeded_subset(dataset, size: int | None, seed: int):
    """``size`` samples drawn without replacement by ``seed`` (the whole dataset when ``size`` is None)."""
    if size is None or size >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    keep = sorted(order[:size])
    from vitkit.data import InMemoryDataset

    if isinstance(dataset, InMemoryDataset):  # stay on the batched in-memory fast path
        targets = [dataset.targets[i] for i in keep]
        return InMemoryDataset(dataset.images[keep], targets, dataset.classes, name=dataset.name)
    return SubsetDataset(dataset, keep)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_datasets(recipe: Recipe) -> tuple[Any, Any, list[str]]:
    """Train split, evaluation split (None when ``train.eval_every_epochs`` is 0) and class names."""
    from vitkit.data import build_dataset

    t = recipe.train
    train_set = seeded_subset(build_dataset(recipe.data, "train"), t.train_subset, t.seed)
    eval_set = None
    if t.eval_every_epochs > 0:
        eval_set = seeded_subset(build_dataset(recipe.data, t.eval_split), t.eval_subset, t.seed + 1)
    classes = list(getattr(train_set, "classes", None) or [])
    if not classes:
        raise ValueError("the training set names no classes (dataset.classes); vitkit needs them to size the head")
    return train_set, eval_set, classes


def build_model(recipe: Recipe, num_classes: int) -> nn.Module:
    """The recipe's model at the data's resolution: from the registry, or from ``model.pretrained``.

    A new model takes the data's normalisation into its config, so the exported weights carry it; a pre-trained
    one keeps its own normalisation and the data follows it (see :func:`align_data`).
    """
    from vitkit.registry import create_model

    m, data = recipe.model, recipe.data
    overrides = dict(m.overrides)
    overrides.setdefault("img_size", data.img_size)
    if tuple(_pair(overrides["img_size"])) != tuple(data.img_size):
        raise ValueError(
            f"model.img_size {overrides['img_size']} differs from data.img_size {data.img_size}; set only data.img_size"
        )
    overrides["num_classes"] = num_classes
    if m.pretrained:
        from vitkit import load_pretrained

        return load_pretrained(m.pretrained, **overrides)
    for key in ("mean", "std", "crop_pct"):
        overrides.setdefault(key, getattr(data, key))
    return create_model(m.name, **overrides)


def align_data(recipe: Recipe, model: nn.Module) -> Recipe:
    """Normalise the data as the model expects (a fine-tuned model keeps its pre-training normalisation)."""
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        return recipe
    data = recipe.data.replace(mean=cfg.mean, std=cfg.std)
    return dataclasses.replace(recipe, data=data)


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def run_folder(recipe: Recipe) -> Path:
    t = recipe.train
    return Path(t.output_dir) / (t.run_name or recipe.name)


def train_model(recipe: Recipe, resume: bool | str | Path = False, run_dir: str | Path | None = None) -> TrainResult:
    """Train as ``recipe`` says, writing the run folder (``train.output_dir/run_name``, see ``runlog``).

    ``resume=True`` continues the run folder's last checkpoint; a path names a checkpoint or run folder. Under
    ``torchrun`` this runs data-parallel over the processes, with rank 0 logging and checkpointing.
    """
    clock = time.perf_counter()  # the wall time of the run includes loading data
    t = recipe.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = dist_utils.resolve_device(t.device)
    dist = dist_utils.setup(device)
    try:
        folder = Path(run_dir) if run_dir is not None else run_folder(recipe)
        state = None
        if resume:
            path = find_resume_checkpoint(folder if resume is True else resume)
            state = load_checkpoint(path)
            if path.parent.name == "checkpoints" and run_dir is None:
                folder = path.parent.parent
            if dist.is_main:
                _report_recipe_changes(state.get("recipe", {}), recipe.to_dict())
        elif (folder / "checkpoints" / "last.pt").exists():
            raise ValueError(
                f"{folder} already holds a run; continue it with --resume, or train into another folder with "
                "--set train.run_name=NAME (or delete the folder)"
            )
        seed_everything(t.seed)
        train_set, eval_set, classes = build_datasets(recipe)
        model = build_model(recipe, len(classes))
        name_classes(model, classes)
        recipe = align_data(recipe, model)
        if dist.is_main:
            atomic_write_text(dump_recipe(recipe), folder / "config.yaml")
        trainer = Trainer(
            model, recipe, train_set, eval_set, classes=classes, run_dir=folder, device=device, dist=dist,
            start_time=clock,
        )  # fmt: skip
        result = trainer.fit(state)
        if dist.is_main:
            export_model(result.ema_model or result.model, folder / "model.safetensors")
        return result
    finally:
        dist_utils.cleanup(dist)


def export_model(model: nn.Module, path: Path) -> Path:
    """Save the final weights with ``vitkit.save_pretrained``: config (class names in ``cfg.extra``) included."""
    from vitkit import save_pretrained

    return save_pretrained(model, path)


def name_classes(model: nn.Module, classes: list[str]) -> None:
    """Record the class names in the model's config, so every checkpoint of it can label its predictions."""
    cfg = model.cfg
    model.cfg = cfg.replace(extra={**cfg.extra, "classes": list(classes)})  # a new dict: configs share theirs


def finetune(
    checkpoint: str | Path,
    recipe: Recipe,
    img_size: int | None = None,
    resume: bool | str | Path = False,
) -> TrainResult:
    """Fine-tune the model in ``checkpoint`` as ``recipe`` says, optionally at a new resolution ``img_size``."""
    model = dataclasses.replace(recipe.model, pretrained=str(checkpoint))
    data = recipe.data.replace(img_size=img_size) if img_size else recipe.data
    return train_model(dataclasses.replace(recipe, model=model, data=data), resume=resume)


def _report_recipe_changes(saved: dict[str, Any], current: dict[str, Any]) -> None:
    changed = []
    for section, values in current.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            before = (saved.get(section) or {}).get(key, value)
            if _norm(before) != _norm(value):
                changed.append(f"{section}.{key}: {before!r} -> {value!r}")
    if changed:
        print("note: the recipe differs from the checkpoint's: " + "; ".join(changed))


def _norm(value: Any) -> Any:
    return [_norm(v) for v in value] if isinstance(value, (list, tuple)) else value
