"""What a study is: a named list of training runs (name -> recipe) and a summary drawn from their results.

A :class:`Study` says which runs it needs (:meth:`Study.plan`), what each run adds to the engine's callbacks (an
evaluation curve, say) and how the finished runs become a table and pictures (:meth:`Study.summarise`). The
runner (:mod:`vitkit.studies.runner`) does the rest for every study alike: the folder, resuming, parallel
processes, the plan with its runtime estimate and the progress lines. A study is one module in this package
defining ``STUDY``, or one registered at run time with :func:`vitkit.studies.register_study`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from vitkit.train.callbacks import Callback
from vitkit.train.recipe import Recipe


@dataclass(frozen=True)
class StudyContext:
    """What every part of a study sees: its folder, the data and how big a version runs."""

    out: Path  # the study folder: runs/, results.csv, results.md, *.png
    data: Path  # an image folder with train/ and test/ (or CIFAR pickles)
    quick: bool = False  # the minutes-long version, for tests and CI
    train_size: int = 0  # images in the training split
    test_size: int = 0  # images in the test split
    classes: tuple[str, ...] = ()
    cache: bool = True  # keep decoded splits in vitkit's on-disk cache (off for throw-away test data)

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / name


@dataclass(frozen=True)
class RunSpec:
    """One training run of a study: its folder name, its recipe and the labels its row carries in the table.

    ``forward_images`` counts the images the run passes forward besides training (evaluations, a study's own
    analysis); with the step count it gives the runtime estimate.
    """

    name: str
    recipe: Recipe
    labels: dict[str, Any] = field(default_factory=dict)
    forward_images: int = 0

    @property
    def steps(self) -> int:
        return int(self.recipe.train.max_steps or 0)


@dataclass
class RunRecord:
    """A finished run as its folder records it (``result.json``): labels, final numbers and measurements."""

    name: str
    folder: Path
    labels: dict[str, Any]
    final: dict[str, float]  # the last evaluation's numbers (top1, top5, eval_loss)
    steps: int
    params: int
    ms_per_step: float | None  # median over the logged windows of the run (wall time per optimiser step)
    wall_seconds: float
    mflops: float | None = None  # forward MFLOPs per image (multiply-add = 2)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "labels": self.labels,
            "final": self.final,
            "steps": self.steps,
            "params": self.params,
            "ms_per_step": self.ms_per_step,
            "wall_seconds": self.wall_seconds,
            "mflops": self.mflops,
            "extra": self.extra,
        }

    @classmethod
    def read(cls, folder: Path) -> RunRecord:
        data = json.loads((Path(folder) / RESULT_FILE).read_text())
        return cls(folder=Path(folder), **data)


RESULT_FILE = "result.json"  # written last: its presence marks a finished run


class Study:
    """Base class of the studies; see the module docstring. Subclasses set ``name``, ``title`` and ``summary``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # the question the study answers, for the report's heading
    summary: ClassVar[str] = ""  # one line for ``vitkit study --list``
    runtime: ClassVar[str] = ""  # the full version's measured or estimated runtime, with the machine it is for
    full: ClassVar[tuple[int, int]] = (0, 0)  # (optimiser steps, batch) of every run in the full version ...
    quick: ClassVar[tuple[int, int]] = (0, 0)  # ... and in --quick

    def steps(self, ctx: StudyContext) -> tuple[int, int]:
        """(optimiser steps, batch) of each run: ``quick`` or ``full`` as ``ctx`` asks."""
        return self.quick if ctx.quick else self.full

    def plan(self, ctx: StudyContext) -> list[RunSpec]:
        """Every run the study needs, in the order they should start (longest first packs parallel jobs best)."""
        raise NotImplementedError

    def callbacks(self, spec: RunSpec, ctx: StudyContext) -> list[Callback]:
        """Extra engine callbacks for ``spec``'s run (created in the process that trains it)."""
        return []

    def analyse(self, model: nn.Module, record: RunRecord, ctx: StudyContext, device: str = "cpu") -> dict[str, Any]:
        """Numbers (JSON-ready) the study computes from a run's trained ``model`` (in eval mode), stored in its
        ``result.json`` as ``extra``; none by default. Runs in the process that trained the run."""
        return {}

    def summarise(self, records: list[RunRecord], ctx: StudyContext) -> list[Path]:
        """Write the table (``results.csv``, ``results.md``) and the pictures from the finished runs."""
        raise NotImplementedError

    def describe(self, ctx: StudyContext) -> str:
        """How the runs compare (equal steps, batch, data), printed with the plan and written into results.md."""
        return ""
