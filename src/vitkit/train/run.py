"""From a recipe to a trained model: data, model, run folder, engine, exported weights.

``train_model(recipe)`` is what ``vitkit train`` calls; ``finetune(checkpoint, recipe)`` is the same with the
model taken from a checkpoint (any format ``vitkit.load_pretrained`` reads), its head reset to the data's classes
and its position embeddings resampled to the new resolution (paper Sec. 3.2).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitkit.train.callbacks import Callback
from vitkit.train.loaders import build_loaders
from vitkit.train.loop import Trainer, TrainResult
from vitkit.train.objectives import build_objective
from vitkit.train.parallel import full_weights, is_sharded
from vitkit.train.recipe import Recipe, dump_recipe
from vitkit.train.state import load_resume_checkpoint
from vitkit.utils import distributed as dist_utils
from vitkit.utils.device import resolve_device
from vitkit.utils.files import atomic_write_text
from vitkit.utils.progress import console_logging
from vitkit.utils.subsets import seeded_subset

log = logging.getLogger("vitkit.train")


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
    if not classes and not _objective_needs_labels(recipe):  # self-supervised (MAE): an unlabelled set is fine
        return train_set, eval_set, classes
    if not classes:
        raise ValueError("the training set names no classes (dataset.classes); vitkit needs them to size the head")
    return train_set, eval_set, classes


def _objective_needs_labels(recipe: Recipe) -> bool:
    from vitkit.train.objectives import objective_class

    return getattr(objective_class(recipe.objective.get("name", "classification")), "needs_labels", True)


def build_model(recipe: Recipe, classes: list[str] | int) -> nn.Module:
    """The recipe's model at the data's resolution: from the registry, or from ``model.pretrained``.

    A new model takes the data's normalisation into its config, so the exported weights carry it; a pre-trained
    one keeps its own normalisation and the data follows it (see :func:`align_data`). The class names go into
    ``cfg.extra["classes"]`` when the model is built (configs never change afterwards), so every checkpoint of it
    can label its predictions.
    """
    from vitkit.registry import create_model, get_config

    names = None if isinstance(classes, int) else [str(c) for c in classes]  # an int: a count, no names
    m, data = recipe.model, recipe.data
    overrides = dict(m.overrides)
    overrides.setdefault("img_size", data.img_size)
    if tuple(_pair(overrides["img_size"])) != tuple(data.img_size):
        raise ValueError(
            f"model.img_size {overrides['img_size']} differs from data.img_size {data.img_size}; set only data.img_size"
        )
    headless = not m.pretrained and not hasattr(get_config(m.name), "num_classes")  # e.g. MAE pre-training
    if not headless:
        overrides["num_classes"] = classes if names is None else len(names)
    if m.pretrained:
        from vitkit.weights.load import load_pretrained

        model = load_pretrained(m.pretrained, **overrides)
        if names is None:
            return model
        extra = {**model.cfg.extra, "classes": names}  # keep what the checkpoint recorded (its name, ...)
        return model if model.cfg.extra == extra else _rebuilt(model, model.cfg.replace(extra=extra))
    for key in ("mean", "std", "crop_pct"):
        overrides.setdefault(key, getattr(data, key))
    if names and not headless:
        overrides["extra"] = {**overrides.get("extra", {}), "classes": names}
    return create_model(m.name, **overrides)


def _rebuilt(model: nn.Module, cfg: Any) -> nn.Module:
    """A new model of config ``cfg`` holding ``model``'s weights (configs are not changed in place)."""
    net = cfg.build()
    net.load_state_dict(model.state_dict())
    return net.train(model.training)


def model_meta(model: nn.Module) -> dict[str, Any]:
    """What checkpoints store beside the weights so ``load_pretrained`` can rebuild the model."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "to_dict"):
        return {}
    return {"model_config": cfg.to_dict(), "model_family": getattr(cfg, "family", "vit")}


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


def train_model(
    recipe: Recipe,
    resume: bool | str | Path = False,
    run_dir: str | Path | None = None,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
) -> TrainResult:
    """Train as ``recipe`` says, writing the run folder (``train.output_dir/run_name``, see ``runlog``).

    ``resume=True`` continues the run folder's last checkpoint; a path names a checkpoint or run folder. Under
    ``torchrun`` this runs data-parallel over the processes, with rank 0 logging and checkpointing.
    """
    clock = time.perf_counter()  # the wall time of the run includes loading data
    console_logging()
    t = recipe.train
    threads = torch.get_num_threads()  # restored at the end: a library call leaves the process as it found it
    if t.threads:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    dist = dist_utils.setup(device)
    try:
        folder = Path(run_dir) if run_dir is not None else run_folder(recipe)
        state = None
        if resume:
            path, state = load_resume_checkpoint(folder if resume is True else resume)
            if path.parent.name == "checkpoints" and run_dir is None:
                folder = path.parent.parent
            if dist.is_main:
                _report_recipe_changes(state.get("recipe", {}), recipe.to_dict())
        elif dist_utils.broadcast_object((folder / "checkpoints" / "last.pt").exists(), dist):  # rank 0 decides
            raise ValueError(
                f"{folder} already holds a run; continue it with --resume, or train into another folder with "
                "--set train.run_name=NAME (or delete the folder)"
            )
        seed_everything(t.seed)
        train_set, eval_set, classes = build_datasets(recipe)
        model = build_model(recipe, classes)
        from vitkit.adapters.training import adapt_for_training

        adapt_for_training(model, recipe.adapter, announce=dist.is_main)  # before the optimiser sees requires_grad
        recipe = align_data(recipe, model)
        if dist.is_main:
            atomic_write_text(dump_recipe(recipe), folder / "config.yaml")
        train_loader, eval_loader = build_loaders(recipe, train_set, eval_set, dist)
        trainer = Trainer(
            model, recipe, train_loader, eval_loader, objective=build_objective(recipe.objective), classes=classes,
            run_dir=folder, device=device, dist=dist, start_time=clock, callbacks=callbacks,
            checkpoint_meta=model_meta(model),
        )  # fmt: skip
        result = trainer.fit(state)
        final = result.ema_model or result.model
        if is_sharded(final):  # FSDP: gather the whole weights (every rank takes part) into an unsharded copy
            weights, final = full_weights(final), final.cfg.build()
            if dist.is_main:
                final.load_state_dict(weights)
        if dist.is_main:
            export_model(final, folder / "model.safetensors")
        # No rank leaves while another still communicates. The wait also lets gloo's worker threads release the
        # last collective's tensors (which needs the GIL) before this process can reach interpreter shutdown, where
        # taking the GIL aborts the process ("terminate called without an active exception").
        dist_utils.barrier(dist)
        return result
    finally:
        dist_utils.cleanup(dist)
        torch.set_num_threads(threads)


def export_model(model: nn.Module, path: Path) -> Path:
    """Save the final weights with ``save_pretrained``: config (class names in ``cfg.extra``) included. An adapted
    model writes only its adapters and head (``adapters.safetensors`` beside ``path``)."""
    from vitkit.adapters.training import is_adapted, save_run_adapters

    if is_adapted(model):
        return save_run_adapters(model, path.parent)
    from vitkit.weights.load import save_pretrained

    return save_pretrained(model, path)


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
        log.info("note: the recipe differs from the checkpoint's: " + "; ".join(changed))


def _norm(value: Any) -> Any:
    return [_norm(v) for v in value] if isinstance(value, (list, tuple)) else value
