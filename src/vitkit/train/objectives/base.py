"""Training objectives: what the engine minimises. This docstring is the reference.

An objective is one small object; the loop calls it once per micro-batch and knows nothing else about the task::

    class Objective:
        name: ClassVar[str]                            # the registry name a recipe uses: `objective: {name: ...}`

        def setup(self, model, device) -> None         # once, before training (e.g. move a teacher to device)
        def loss(self, model, batch) -> (loss, logs)   # per micro-batch, under the recipe's autocast
        def state_dict(self) -> dict                   # anything a resumed run must restore (default: {})
        def load_state_dict(self, state) -> None

``loss(model, batch)``
    ``batch`` is ``(inputs, targets)`` after the task's batch transform (:mod:`vitkit.tasks`): images
    (B, C, H, W) float, normalised; targets are what the task hands on (soft (B, K) rows or integer labels (B,) for
    classification, (B, H, W) label maps for segmentation, anything for unlabelled data). ``model`` is the callable
    to train: call ``model(x)`` (it may be a DDP or compiled wrapper, so the forward must go through ``__call__``
    for gradients to synchronise); a model that answers differently for an objective says so through a keyword
    (``model(x, distillation=True)``, ``model(x, aux=True)``), never through a flag set on it. Return a scalar loss
    tensor with a graph, and a dict of extra numbers to log (floats or 0-d tensors; the engine averages them over
    the steps between log lines and over processes, and writes them to metrics.jsonl as ``train/<key>``). The loss
    itself is always logged as ``loss``.

What an evaluation reports is the task's (:meth:`vitkit.tasks.Task.evaluate`), not the objective's; a task that
scores a loss (masked-image pre-training) calls the objective's ``loss``.

Objectives register by name with :func:`register_objective`; :func:`build_objective` makes one from a recipe's
``objective:`` section, whose keys other than ``name`` are the objective's dataclass fields (unknown keys raise).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from vitkit.utils.typed import build_dataclass

Batch = tuple[torch.Tensor, torch.Tensor | None]

_REGISTRY: dict[str, type[Objective]] = {}


@dataclass
class Objective:
    """Base class: subclass it as a dataclass whose fields are the recipe options, and implement ``loss``."""

    name: ClassVar[str] = ""

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """Called once before training starts."""

    def loss(self, model: Callable[..., Any], batch: Batch) -> tuple[torch.Tensor, Mapping[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must implement loss(model, batch)")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (nothing, by default)."""

    def options(self) -> dict[str, Any]:
        """The recipe section that rebuilds this objective: ``{"name": ..., **fields}``."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make ``cls`` available to recipes as ``objective: {name: cls.name}``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name` to be registered")
    _REGISTRY[cls.name] = cls
    return cls


def list_objectives() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def objective_class(name: str) -> type[Objective]:
    """The objective class registered as ``name``; unknown names raise listing the known ones."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(_REGISTRY)} (objective.name)")
    return _REGISTRY[name]


def build_objective(section: Mapping[str, Any] | None = None) -> Objective:
    """An objective from a recipe section ``{"name": ..., **options}`` (classification when empty)."""
    options = dict(section or {})
    name = str(options.pop("name", None) or "classification")
    return build_dataclass(objective_class(name), options, f"objective ({name})")


def _load_builtin() -> None:
    """Import the objective modules shipped beside this one, so they register themselves."""
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name != "base":
            importlib.import_module(f"{__package__}.{info.name}")
