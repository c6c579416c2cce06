"""Training recipes: YAML files parsed into typed, frozen dataclasses.

A recipe has the sections ``model``, ``data``, ``optim``, ``schedule``, ``train`` and ``objective`` (what is
minimised: ``name: classification`` when absent; see ``vitkit.train.objectives``). Every key is checked
against its dataclass, so a typo is an error that lists the valid keys instead of a setting that silently does
nothing, and every value is converted to its field's type (``--set optim.lr=3e-4`` gives a float).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vitkit.adapters.config import AdapterConfig
from vitkit.config import ModelConfig, ViTConfig
from vitkit.config.named import MODEL_CONFIGS
from vitkit.tasks import Task, get_task, list_tasks, task_of
from vitkit.train.objectives import build_objective
from vitkit.train.objectives.distill import distill_section
from vitkit.utils.typed import build_dataclass, coerce

MODEL_KEYS = ("name", "pretrained", "init_from")


@dataclass(frozen=True)
class ModelSection:
    """Which network to train: a registry name (or a checkpoint to fine-tune) plus ViTConfig field overrides.

    In YAML the overrides are written flat next to ``name`` (``depth: 6``); each is typed by its ViTConfig field.
    """

    name: str = "vit_tiny_patch4_32"
    pretrained: str | None = None  # anything vitkit.load_pretrained reads; the head is reset to the data's classes
    init_from: str | None = None  # a classifier's weights (any format) to start the backbone from (a segmentor's)
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and gradient handling. ``layer_decay`` scales block i's rate by decay^(depth + 1 - i)."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    nesterov: bool = False
    layer_decay: float | None = None
    clip_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"optim.lr must be > 0 and optim.weight_decay >= 0, got {self.lr} and {self.weight_decay}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"optim.layer_decay must lie in (0, 1], got {self.layer_decay}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(
                f"optim.clip_grad_norm must be positive (or null for no clipping), got {self.clip_grad_norm}"
            )


@dataclass(frozen=True)
class ScheduleConfig:
    """Per-step learning rate: linear warm-up from ``warmup_start_factor * lr``, then ``decay`` to ``min_lr``."""

    decay: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    warmup_fraction: float = 0.0  # of all steps: follows the step count a time budget settles on
    warmup_start_factor: float = 0.0
    min_lr: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """The run itself: length, batch, numerics, checkpointing and logging.

    ``batch_size`` is global: it is split over processes and accumulation steps, so a recipe means the same
    optimisation on one CPU or eight GPUs. With ``max_minutes`` the schedule is laid out over the number of steps
    that fit the budget (measured after ``calibration_steps``), evaluation and start-up included.
    """

    epochs: int = 10
    batch_size: int = 128
    accum_steps: int = 1
    max_steps: int | None = None
    max_minutes: float | None = None
    calibration_steps: int = 20
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on GPUs and AMX CPUs, else fp32
    sdpa_backend: Literal["auto", "math", "flash", "efficient"] = "auto"  # attention kernel; auto = PyTorch's pick
    compile: bool = False
    parallel: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: replicate (DDP) or shard (FSDP, one unit per block)
    grad_checkpointing: bool = False
    ema_decay: float | None = None
    ema_warmup: bool = True
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    train_subset: int | None = None
    eval_subset: int | None = None
    eval_split: str = "test"
    eval_every_epochs: int = 1
    eval_at_start: bool = False
    eval_batch_size: int | None = None
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 0  # also keep the newest N periodic training states (step-<step>.pt) beside last/best
    log_every_steps: int = 20
    output_dir: str = "runs"
    run_name: str | None = None
    progress: bool = True
    tensorboard: bool = False  # also write metrics under tensorboard/ (pip install 'vitkit[train]')

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "accum_steps", "calibration_steps", "log_every_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "max_minutes", "train_subset", "eval_subset", "eval_batch_size", "threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"train.{name} must be positive (or null for none), got {value}")
        if self.eval_every_epochs < 0 or self.checkpoint_every_steps < 0 or self.keep_checkpoints < 0:
            raise ValueError(
                "train.eval_every_epochs, train.checkpoint_every_steps and train.keep_checkpoints must be >= 0 (0: off)"
            )
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"train.ema_decay must lie in (0, 1), got {self.ema_decay}")


@dataclass(frozen=True)
class Recipe:
    """A complete, typed training recipe. ``data`` is a :class:`vitkit.data.DataConfig`."""

    name: str = "recipe"
    model: ModelSection = field(default_factory=ModelSection)
    data: Any = None  # the task's data config (vitkit.data.DataConfig for classification)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    objective: dict[str, Any] = field(default_factory=lambda: {"name": "classification"})  # name + its options
    adapter: AdapterConfig = field(default_factory=AdapterConfig)  # method none: train the whole model

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON ready), model overrides written flat as in the recipe file."""
        out = {"name": self.name}
        for section in _SECTIONS:
            out[section] = _plain(getattr(self, section))
        model = out["model"]
        model.update(model.pop("overrides"))
        return out

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _named_config(name: Any) -> ModelConfig:
    """The config of a registered model name; a default ViTConfig for anything else (checked when it is built)."""
    return MODEL_CONFIGS[name] if isinstance(name, str) and name in MODEL_CONFIGS else ViTConfig()


def recipe_task(recipe: Recipe) -> Task:
    """The task a recipe trains: its model's (the family of ``model.name``)."""
    return task_of(_named_config(recipe.model.name))


def _model_section(data: Any) -> ModelSection:
    if data is None:
        return ModelSection()
    if isinstance(data, ModelSection):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"model: expected a mapping, got {data!r}")
    named = _named_config(data.get("name"))  # the named model's family (ViT, MAE, ...) types the overrides
    hints = _field_hints(named)
    unknown = sorted(set(data) - set(MODEL_KEYS) - set(hints))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in 'model'; valid keys: {list(MODEL_KEYS)} and the {type(named).__name__} "
            f"fields {sorted(hints)}"
        )
    overrides = {k: coerce(v, hints[k], f"model.{k}") for k, v in data.items() if k not in MODEL_KEYS}
    head = {k: data[k] for k in MODEL_KEYS if k in data}
    section = build_dataclass(ModelSection, head, "model")
    return dataclasses.replace(section, overrides=overrides)


def _field_hints(cfg: ModelConfig) -> dict[str, Any]:
    """Field -> type of a config, and of the backbone it holds (a segmentor's), whose fields it passes on; a
    ``backbone`` mapping changes the backbone's fields."""
    hints = dict(typing.get_type_hints(type(cfg)))
    backbone = getattr(cfg, "backbone", None)
    if isinstance(backbone, ModelConfig):
        hints = {**typing.get_type_hints(type(backbone)), **hints, "backbone": dict}
    known = {f.name for f in dataclasses.fields(cfg)} | set(hints if backbone is not None else ())  # type: ignore[arg-type]
    return {k: v for k, v in hints.items() if k in known and k != "family"}


def recipe_from_dict(data: dict[str, Any], name: str | None = None) -> Recipe:
    """Build a :class:`Recipe` from nested plain data, checking every key and type."""
    if not isinstance(data, dict):
        raise ValueError(f"a recipe is a mapping with sections {_SECTIONS}, got {type(data).__name__}")
    data = distill_section(data)  # `distill:` is shorthand for `objective: {name: distillation, ...}`
    unknown = sorted(set(data) - {"name", *_SECTIONS})
    if unknown:
        raise ValueError(f"unknown top-level key(s) {unknown}; valid keys: {['name', *_SECTIONS]}")
    model = _model_section(data.get("model"))
    task = task_of(_named_config(model.name))  # the task types the data section and chooses the objectives
    return Recipe(
        name=str(data.get("name") or name or "recipe"),
        model=model,
        data=build_dataclass(task.data_config_class(), data.get("data"), "data"),
        optim=build_dataclass(OptimConfig, data.get("optim"), "optim"),
        schedule=build_dataclass(ScheduleConfig, data.get("schedule"), "schedule"),
        train=build_dataclass(TrainConfig, data.get("train"), "train"),
        objective=_objective_section(data.get("objective"), task),
        adapter=build_dataclass(AdapterConfig, data.get("adapter"), "adapter"),
    )


def _objective_section(data: Any, task: Task) -> dict[str, Any]:
    """``{"name": ..., **options}``, checked against the named objective's fields; the task's first objective
    when the recipe names none, and only one of the task's objectives."""
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"objective: expected a mapping such as {{name: {task.objectives[0]}}}, got {data!r}")
    section = dict(data or {})
    section["name"] = section.get("name") or task.objectives[0]
    owners = [t for t in list_tasks() if section["name"] in get_task(t).objectives]
    if owners and task.name not in owners:  # another task's objective; one no task lists (a user's) is free
        raise ValueError(
            f"objective {section['name']!r} does not train a {task.name} model; choose one of {list(task.objectives)} "
            "or a model of that objective's task"
        )
    return build_objective(section).options()


_SECTIONS = ("model", "data", "optim", "schedule", "train", "objective", "adapter")


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings to nested recipe data; the value is parsed as YAML."""
    import yaml

    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ValueError(f"override {item!r} must look like section.key=value, e.g. optim.lr=3e-4")
        section, name = parts
        if section not in (*_SECTIONS, "distill"):
            raise ValueError(f"override {item!r}: unknown section {section!r}; valid sections: {list(_SECTIONS)}")
        out.setdefault(section, {})
        out[section] = {**(out[section] or {}), name: yaml.safe_load(raw) if raw.strip() else None}
    return out


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a YAML recipe (a path, or the name of a shipped one: ``cifar10_vit``) and apply ``--set``-style
    overrides; the recipe's name defaults to the file's stem."""
    from vitkit.train.catalog import resolve_recipe

    path = resolve_recipe(path)
    import yaml  # optional (vitkit[train]); the CLI turns its absence into a one-line hint

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path}: expected a mapping with sections {list(_SECTIONS)}")
    data.setdefault("name", path.stem)
    return recipe_from_dict(apply_overrides(data, overrides))


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML text (every field, defaults included), as written into the run folder."""
    import yaml

    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
