"""Tasks as plug-ins: one :class:`Task` per task, found by listing this package (modules defining ``TASK``) or
added with :func:`register_task`. A model's task comes from its family (:attr:`vitkit.families.Family.task`), so
a checkpoint says by itself whether it classifies, segments or reconstructs."""

from __future__ import annotations

from torch import nn

from vitkit.config.base import ModelConfig
from vitkit.families import family_of
from vitkit.tasks.base import EvalContext, Report, Task, TaskData
from vitkit.utils.plugins import PluginRegistry

__all__ = ["EvalContext", "Report", "Task", "TaskData", "get_task", "list_tasks", "register_task", "task_of"]

_REGISTRY: PluginRegistry[Task] = PluginRegistry(__name__, __path__, "TASK", Task, "task")


def register_task(task: Task) -> Task:
    """Make ``task`` known to vitkit; a family whose ``task`` names it then trains, evaluates and predicts with it."""
    return _REGISTRY.register(task)


def list_tasks() -> list[str]:
    return _REGISTRY.names()


def get_task(name: str) -> Task:
    return _REGISTRY.get(name)


def task_of(obj: ModelConfig | nn.Module) -> Task:
    """The task of a model or config, as its family says; a backbone family (no task of its own) is one line
    naming what to do."""
    family = family_of(obj)
    if family.task is None:
        raise ValueError(
            f"a {family.name!r} model is a backbone with no task of its own; use it inside a model that has one "
            "(e.g. a segmentor: vitkit models 'upernet*')"
        )
    return get_task(family.task)
