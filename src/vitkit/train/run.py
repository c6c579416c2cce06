"""From a recipe to a trained model: ``train_model`` composes small steps, each its own function.

The recipe's task (its model's family's) says what the data is, how the model is sized from it and how it is
evaluated; the steps are: the run folder and resume policy, seeding, the data, the model (seeded on its own, so
its initialisation never depends on how the data was read), adapters, loaders, the evaluator and checkpointer,
the loop, and the export of the final weights. ``finetune(checkpoint, recipe)`` is the same with the model taken
from a checkpoint (any format ``vitkit.load_pretrained`` reads), its head reset to the data's classes and its
position embeddings resampled to the new resolution (paper Sec. 3.2).
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

from vitkit.adapters.training import adapt_for_training, is_adapted, save_run_adapters
from vitkit.families import build_model as build_from_config
from vitkit.families import family_of
from vitkit.registry import get_config
from vitkit.tasks import Task, TaskData
from vitkit.train.callbacks import Callback
from vitkit.train.checkpointer import Checkpointer
from vitkit.train.evaluator import Evaluator
from vitkit.train.loaders import build_loaders
from vitkit.train.loop import Trainer, TrainResult
from vitkit.train.objectives import build_objective
from vitkit.train.parallel import attention_backend, full_weights, is_sharded
from vitkit.train.recipe import Recipe, dump_recipe, recipe_task
from vitkit.train.state import load_resume_checkpoint
from vitkit.utils import distributed as dist_utils
from vitkit.utils.device import resolve_device, resolve_precision
from vitkit.utils.distributed import DistInfo
from vitkit.utils.files import atomic_write_text
from vitkit.utils.progress import console_logging
from vitkit.utils.subsets import seeded_subset
from vitkit.weights.load import init_from, load_pretrained, save_pretrained

log = logging.getLogger("vitkit.train")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_datasets(recipe: Recipe, task: Task | None = None) -> TaskData:
    """The task's train split, evaluation split (None when ``train.eval_every_epochs`` is 0) and the description
    of the data that sizes the model (class names)."""
    task = task or recipe_task(recipe)
    t = recipe.train
    train_set = seeded_subset(task.dataset(recipe.data, "train", augment=True), t.train_subset, t.seed)
    eval_set = None
    if t.eval_every_epochs > 0:
        eval_set = seeded_subset(task.dataset(recipe.data, t.eval_split, augment=False), t.eval_subset, t.seed + 1)
    return TaskData(train_set, eval_set, task.describe(train_set, recipe.data))


def build_model(recipe: Recipe, info: dict[str, Any], task: Task | None = None) -> nn.Module:
    """The recipe's model at the data's resolution, sized by the task from ``info``: from the registry, or from
    ``model.pretrained``.

    A new model takes the data's normalisation into its config, so the exported weights carry it; a pre-trained
    one keeps its own normalisation and the data follows it (see :func:`align_data`). What the task takes from the
    data (class names) goes into ``cfg.extra`` when the model is built (configs never change afterwards), so every
    checkpoint of it can label its predictions. The torch RNG is seeded with ``train.seed`` right before, so the
    initialisation is the same however the data was read (decoded, or from the cache) and, for a run whose data
    draws nothing, the same as before the data was read at all.
    """
    task = task or recipe_task(recipe)
    m, data = recipe.model, recipe.data
    overrides = dict(m.overrides)
    overrides.setdefault("img_size", data.img_size)
    if tuple(_pair(overrides["img_size"])) != tuple(data.img_size):
        raise ValueError(
            f"model.img_size {overrides['img_size']} differs from data.img_size {data.img_size}; set only data.img_size"
        )
    sized = task.model_overrides(info)
    extra = sized.pop("extra", {})
    torch.manual_seed(recipe.train.seed)
    if m.pretrained:
        model = load_pretrained(m.pretrained, **overrides, **sized)
        merged = {**model.cfg.extra, **extra}  # keep what the checkpoint recorded (its name, ...)
        return model if model.cfg.extra == merged else _rebuilt(model, model.cfg.replace(extra=merged))
    for key in ("mean", "std", "crop_pct"):  # the preprocessing the data config states
        if hasattr(data, key):
            overrides.setdefault(key, getattr(data, key))
    if extra:
        overrides["extra"] = {**overrides.get("extra", {}), **extra}
    model = build_from_config(get_config(m.name, **overrides, **sized))
    if m.init_from:
        init_from(model, m.init_from)
    return model


def _rebuilt(model: nn.Module, cfg: Any) -> nn.Module:
    """A new model of config ``cfg`` holding ``model``'s weights (configs are not changed in place)."""
    net = family_of(cfg).build(cfg)
    net.load_state_dict(model.state_dict())
    return net.train(model.training)


def model_meta(model: nn.Module) -> dict[str, Any]:
    """What checkpoints store beside the weights so ``load_pretrained`` can rebuild the model."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "to_dict"):
        return {}
    return {"model_config": cfg.to_dict(), "model_family": family_of(cfg).name}


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


def resume_state(
    recipe: Recipe, folder: Path, resume: bool | str | Path, dist: DistInfo, run_dir_given: bool
) -> tuple[Path, dict[str, Any] | None]:
    """(run folder, training state to resume or None). A folder that already holds a run is refused unless asked
    to resume: nothing is overwritten by accident."""
    if resume:
        path, state = load_resume_checkpoint(folder if resume is True else resume)
        if path.parent.name == "checkpoints" and not run_dir_given:
            folder = path.parent.parent
        if dist.is_main:
            _report_recipe_changes(state.get("recipe", {}), recipe.to_dict())
        return folder, state
    if dist_utils.broadcast_object((folder / "checkpoints" / "last.pt").exists(), dist):  # rank 0 decides
        raise ValueError(
            f"{folder} already holds a run; continue it with --resume, or train into another folder with "
            "--set train.run_name=NAME (or delete the folder)"
        )
    return folder, None


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
        given = Path(run_dir) if run_dir is not None else run_folder(recipe)
        folder, state = resume_state(recipe, given, resume, dist, run_dir is not None)
        task = recipe_task(recipe)
        seed_everything(t.seed)
        data = build_datasets(recipe, task)
        model = build_model(recipe, data.info, task)
        adapt_for_training(model, recipe.adapter, announce=dist.is_main)  # before the optimiser sees requires_grad
        recipe = align_data(recipe, model)
        if dist.is_main:
            atomic_write_text(dump_recipe(recipe), folder / "config.yaml")
        trainer = build_trainer(recipe, model, folder, data=data, task=task, device=device, dist=dist,
                                start_time=clock, callbacks=callbacks)  # fmt: skip
        result = trainer.fit(state)
        final = _gathered(result.ema_model or result.model, dist)
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


def build_trainer(
    recipe: Recipe,
    model: nn.Module,
    run_dir: str | Path | None,
    *,
    data: TaskData | None = None,
    task: Task | None = None,
    device: torch.device | None = None,
    dist: DistInfo | None = None,
    **options: Any,
) -> Trainer:
    """The loop with its parts for ``model``: the task's data (built when not given), loaders and transforms, the
    recipe's objective, the evaluator and the checkpointer. ``options`` go to :class:`Trainer` (``clock``,
    ``start_time``, ``callbacks``)."""
    task = task or recipe_task(recipe)
    data = data or build_datasets(recipe, task)
    t, dist = recipe.train, dist or DistInfo()
    device = device or resolve_device(t.device)
    train_loader, eval_loader = build_loaders(recipe, data.train, data.eval, dist, task.eval_batch_size)
    objective = build_objective(recipe.objective)
    evaluator = None
    if eval_loader is not None:
        evaluator = Evaluator(
            task, eval_loader, task.batch_transform(recipe.data, data.info, train=False), objective=objective,
            device=device, precision=resolve_precision(t.precision, device), dist=dist, info=data.info,
            attention=attention_backend(t.sdpa_backend),
        )  # fmt: skip
    run_dir = Path(run_dir) if run_dir is not None else None
    return Trainer(
        model, recipe, train_loader, task.batch_transform(recipe.data, data.info, train=True), objective,
        evaluator=evaluator, checkpointer=Checkpointer(run_dir, dist.is_main, t.keep_checkpoints), info=data.info,
        run_dir=run_dir, device=device, dist=dist, checkpoint_meta=model_meta(model), **options,
    )  # fmt: skip


def _gathered(model: nn.Module, dist: DistInfo) -> nn.Module:
    """FSDP: the whole weights gathered (every rank takes part) into an unsharded copy on rank 0."""
    if not is_sharded(model):
        return model
    weights, final = full_weights(model), family_of(model).build(model.cfg)
    if dist.is_main:
        final.load_state_dict(weights)
    return final


def export_model(model: nn.Module, path: Path) -> Path:
    """Save the final weights with ``save_pretrained``: config (class names in ``cfg.extra``) included. An adapted
    model writes only its adapters and head (``adapters.safetensors`` beside ``path``)."""
    if is_adapted(model):
        return save_run_adapters(model, path.parent)
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
