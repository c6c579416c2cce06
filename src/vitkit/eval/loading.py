"""Loading a trained model for a command (eval, predict, few-shot, serve), for the task the command needs.

Everything goes through ``vitkit.load_pretrained``, so any checkpoint it reads works: a run's
``model.safetensors``, its training checkpoints (``checkpoints/last.pt``, EMA weights preferred, or ``best.pt``),
timm, Hugging Face or JAX files, with adapters when given. The task comes from the checkpoint (its family); a
command that needs another task gets the model the checkpoint's family can become (an MAE's encoder serves as a
classifier's features), or one line saying which task the checkpoint is for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from vitkit.adapters.loading import load_pretrained
from vitkit.eval.prediction import class_names
from vitkit.families import build_model, family_of, get_family
from vitkit.tasks import get_task, task_of
from vitkit.weights.hub import is_hub_name
from vitkit.weights.load import as_family


def load_for_task(path: str | Path, task: str | None = None, *, command: str = "this command", **overrides: Any):
    """(model in eval mode, its task): the checkpoint's own task, or ``task`` when the checkpoint's family is that
    task's or can become a family of it."""
    if not Path(path).exists() and not is_hub_name(path):  # hub names (hf-hub:..., timm/...) resolve in the cache
        raise FileNotFoundError(f"checkpoint {path} not found")
    model = load_pretrained(str(path), **overrides)
    if task is None or task_of(model).name == task:
        return model.eval(), task_of(model)
    family = family_of(model)
    for name in family.derived:
        if get_family(name).task == task:
            state, cfg = as_family(model.state_dict(), model.cfg, get_family(name), str(path))
            net = build_model(cfg)
            net.load_state_dict(state)
            return net.eval(), get_task(task)
    raise ValueError(
        f"{path} is a {task_of(model).name} checkpoint (a {family.name!r} model); {command} needs a {task} model"
    )


def load_classifier(path: str | Path, **overrides: Any) -> tuple[nn.Module, list[str]]:
    """(model in eval mode, class names) for commands that classify; names fall back to '0', '1', ..."""
    model, _ = load_for_task(path, "classification", command="classifying", **overrides)
    return model, class_names(model)
