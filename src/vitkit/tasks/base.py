"""What differs between tasks, in one object: the :class:`Task` interface. This docstring is the reference.

A task (classification, masked-image pre-training, segmentation) owns everything the engine, the evaluation and
the commands must not know about: the data it reads and the batch it hands on, how the model is sized from the
data, its objectives, its evaluation and the numbers that report it, what ``predict`` gives, and the output an
export checks. The training loop and the run composer ask the task; they read nothing task-specific themselves.

Batch contract: a loader yields ``(uint8 images (B, C, H, W), targets)``; the task's ``batch_transform`` turns
that, on the device, into ``(model input, targets)`` for ``objective.loss`` (classification: normalised, mixed
images and soft or integer labels; segmentation: normalised images and (B, H, W) label maps).

Adding a task is one module in this package defining ``TASK``; see docs/architecture.md ("Adding a task").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from vitkit.data.loader import create_loader
from vitkit.train.objectives.base import build_objective


@dataclass(frozen=True)
class EvalContext:
    """What an evaluation needs besides the model and the loader."""

    transform: Callable | None = None  # eval-mode batch transform: uint8 images -> model input
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    dist: Any = None  # vitkit.utils.distributed.DistInfo: counts are summed over processes
    info: Mapping[str, Any] = field(default_factory=dict)  # the data's description (class names, palette, ...)
    progress: bool = False
    reference: nn.Module | None = None  # a float32 model to compare a quantised one with (vitkit eval --precision int8)


class Report(Protocol):
    """What an evaluation returns: its numbers for the metrics rows, a JSON-ready summary for best.pt, everything
    (metrics.json), the part ``--json`` prints, and the lines ``vitkit eval`` prints."""

    def numbers(self) -> dict[str, float]: ...

    def summary(self) -> dict[str, Any]: ...

    def to_dict(self) -> dict[str, Any]: ...

    def brief(self) -> dict[str, Any]: ...

    def format(self) -> str: ...


@dataclass
class TaskData:
    """A task's datasets and what they say about the model to build (class names, a palette, ...)."""

    train: Any
    eval: Any
    info: dict[str, Any]


class Task:
    """Base class of the tasks; see the module docstring."""

    name: ClassVar[str] = ""
    objectives: ClassVar[tuple[str, ...]] = ()  # recipe objective names this task trains with; the first is default
    best_metric: ClassVar[str] = "eval_loss"  # the evaluation number that picks checkpoints/best.pt ...
    higher_is_better: ClassVar[bool] = False  # ... and which way is better
    percentages: ClassVar[tuple[str, ...]] = ()  # evaluation numbers that are fractions, shown as percentages

    # ------------------------------------------------------------------------------------------------ data
    def data_config_class(self) -> type:
        """The dataclass of a recipe's ``data:`` section for this task."""
        raise NotImplementedError

    def data_config_for(self, model_cfg: Any, **changes: Any) -> Any:
        """A data config matching a model's preprocessing (image size, normalisation), then ``changes``."""
        return self.data_config_class().from_model_config(model_cfg, **changes)

    def dataset(self, data_cfg: Any, split: str, augment: bool) -> Any:
        """One split, with the training augmentation or the evaluation transform."""
        raise NotImplementedError

    def describe(self, train_set: Any, data_cfg: Any = None) -> dict[str, Any]:
        """What the training data says about the model (e.g. ``{"classes": [...]}``); errors name what is missing."""
        return {}

    def model_overrides(self, info: Mapping[str, Any]) -> dict[str, Any]:
        """Config fields a new model takes from the data (head size, class names in ``extra``)."""
        return {}

    def batch_transform(self, data_cfg: Any, info: Mapping[str, Any], train: bool) -> Callable:
        """``(uint8 images, targets) -> (model input, targets)`` on the device (see the batch contract)."""
        raise NotImplementedError

    def eval_info(self, model: nn.Module, dataset: Any, data_name: str) -> dict[str, Any]:
        """The description an evaluation of ``model`` on ``dataset`` reports with; raises when they do not fit."""
        return self.describe(dataset)

    def eval_loader(self, dataset: Any, batch_size: int, num_workers: int) -> Any:
        """The loader of an evaluation split (in order, nothing dropped), in batches this task can form."""
        batch = self.eval_batch_size(batch_size)
        return create_loader(dataset, batch, shuffle=False, num_workers=num_workers, seed=0, drop_last=False)

    def eval_batch_size(self, requested: int) -> int:
        """The evaluation batch this task can form (a task with images of varying size takes one at a time)."""
        return requested

    def default_objective(self, model: nn.Module | None = None) -> Any:
        """The objective a recipe gets when it names none (also what an evaluation that scores a loss uses)."""
        return build_objective({"name": self.objectives[0]})

    # ------------------------------------------------------------------------------------------ evaluation
    def evaluate(self, model: nn.Module, loader: Iterable, ctx: EvalContext, objective: Any = None) -> Report:
        raise NotImplementedError

    def write_report(self, report: Report, out_dir: str | Path) -> list[Path]:
        """Files for a person to read (metrics JSON, pictures) in ``out_dir``."""
        return []

    # ------------------------------------------------------------------------------------------- inference
    def predict(self, model: nn.Module, paths: Sequence[str], **options: Any) -> list[Any]:
        """Per image: a result with ``to_dict()`` and ``format()`` (what ``vitkit predict`` prints)."""
        raise NotImplementedError(f"the {self.name} task has no predict")

    def output_shape(self, model_cfg: Any, batch: int, image_size: tuple[int, int]) -> tuple[int, ...] | None:
        """The shape an exported model must return for ``batch`` images (None: whatever PyTorch returns)."""
        return None
