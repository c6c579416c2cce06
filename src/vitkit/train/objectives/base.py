"""Training objectives: what the engine minimises and what its evaluation reports. This docstring is the reference.

An objective is one small object; the loop calls it once per micro-batch and knows nothing else about the task::

    class Objective:
        name: ClassVar[str]             # the registry name a recipe uses: `objective: {name: ...}`
        reports: ClassVar[str]          # what evaluation reports (below)
        best_metric: ClassVar[str]      # the evaluation number that picks checkpoints/best.pt ...
        higher_is_better: ClassVar[bool]  # ... and which way is better

        def setup(self, model, device) -> None            # once, before training (e.g. move a teacher to device)
        def loss(self, model, batch) -> (loss, logs)      # per micro-batch, under the recipe's autocast
        def evaluate(self, model, loader, ctx) -> result  # per evaluation; default from `reports`
        def state_dict(self) -> dict                      # anything a resumed run must restore (default: {})
        def load_state_dict(self, state) -> None

``loss(model, batch)``
    ``batch`` is ``(images, targets)`` after the data's batch augmentation: images (B, C, H, W) float, normalised;
    targets are soft (B, K) rows (Mixup/CutMix/label smoothing), integer labels (B,), or None for unlabelled
    data. ``model`` is the callable to train: call ``model(x)`` (it may be a DDP or compiled wrapper, so the
    forward must go through ``__call__`` for gradients to synchronise). Return a scalar loss tensor with a
    graph, and a dict of extra numbers to log (floats or 0-d tensors; the engine averages them over the steps
    between log lines and over processes, and writes them to metrics.jsonl as ``train/<key>``). The loss itself
    is always logged as ``loss``.

``reports`` / ``evaluate(model, loader, ctx)``
    ``"classification"``: top-1, top-5 and the cross-entropy on the evaluation split (``vitkit.eval``), returned
    as an :class:`~vitkit.eval.metrics.EvalResult`; rows get ``top1``, ``top5`` and ``eval_loss``.
    ``"loss"``: the objective's own loss averaged over the evaluation split; rows get ``eval_loss``.
    Anything else: override ``evaluate`` and return a dict of numbers (it must hold ``best_metric``).
    ``ctx`` is an :class:`EvalContext` (augment, device, precision, processes, class names).

Objectives register by name with :func:`register_objective`; :func:`build_objective` makes one from a recipe's
``objective:`` section, whose keys other than ``name`` are the objective's dataclass fields (unknown keys raise).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor | None]

_REGISTRY: dict[str, type[Objective]] = {}


@dataclass(frozen=True)
class EvalContext:
    """What an evaluation needs besides the model and the loader."""

    augment: Callable | None = None  # eval-mode batch augmentation: uint8 images -> normalised float
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    dist: Any = None  # vitkit.utils.distributed.DistInfo: counts are summed over processes
    classes: list[str] | None = None


@dataclass
class Objective:
    """Base class: subclass it as a dataclass whose fields are the recipe options, and implement ``loss``."""

    name: ClassVar[str] = ""
    reports: ClassVar[str] = "loss"
    best_metric: ClassVar[str] = "eval_loss"
    higher_is_better: ClassVar[bool] = False

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """Called once before training starts."""

    def loss(self, model: Callable[..., Any], batch: Batch) -> tuple[torch.Tensor, Mapping[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} must implement loss(model, batch)")

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable, ctx: EvalContext) -> Any:
        """Mean loss over ``loader`` (``reports = "loss"``); classification objectives report accuracy instead."""
        from vitkit.utils.device import autocast_for
        from vitkit.utils.distributed import all_reduce_sum

        was_training = model.training
        model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=ctx.device)  # [loss sum, samples]
        for images, labels in loader:
            images, labels = images.to(ctx.device), labels.to(ctx.device)
            x = ctx.augment(images, labels)[0] if ctx.augment is not None else images
            with autocast_for(ctx.precision, ctx.device):
                loss, _ = self.loss(model, (x, labels))
            totals += torch.stack([loss.detach().double() * len(x), totals.new_tensor(len(x))])
        model.train(was_training)
        all_reduce_sum(totals, ctx.dist)
        return {"eval_loss": (totals[0] / totals[1].clamp(min=1)).item()}

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
    from vitkit.train.recipe import build_dataclass

    options = dict(section or {})
    name = str(options.pop("name", None) or "classification")
    return build_dataclass(objective_class(name), options, f"objective ({name})")


def _load_builtin() -> None:
    """Import the objectives shipped with vitkit, so they register themselves."""
    import vitkit.train.objectives  # noqa: F401
