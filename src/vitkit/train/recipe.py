"""Training recipes: YAML files parsed into typed, frozen dataclasses.

A recipe has the sections ``model``, ``data``, ``optim``, ``schedule``, ``train`` and ``objective`` (what is
minimised: ``name: classification`` when absent; see ``vitkit.train.objectives``). Every key is checked
against its dataclass, so a typo is an error that lists the valid keys instead of a setting that silently does
nothing, and every value is converted to its field's type (``--set optim.lr=3e-4`` gives a float).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vitkit.adapters.config import AdapterConfig
from vitkit.config import ViTConfig

MODEL_KEYS = ("name", "pretrained")


@dataclass(frozen=True)
class ModelSection:
    """Which network to train: a registry name (or a checkpoint to fine-tune) plus ViTConfig field overrides.

    In YAML the overrides are written flat next to ``name`` (``depth: 6``); each is typed by its ViTConfig field.
    """

    name: str = "vit_tiny_patch4_32"
    pretrained: str | None = None  # anything vitkit.load_pretrained reads; the head is reset to the data's classes
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
        if self.eval_every_epochs < 0 or self.checkpoint_every_steps < 0:
            raise ValueError("train.eval_every_epochs and train.checkpoint_every_steps must be >= 0 (0: off)")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"train.ema_decay must lie in (0, 1), got {self.ema_decay}")


@dataclass(frozen=True)
class Recipe:
    """A complete, typed training recipe. ``data`` is a :class:`vitkit.data.DataConfig`."""

    name: str = "recipe"
    model: ModelSection = field(default_factory=ModelSection)
    data: Any = None  # vitkit.data.DataConfig; typed lazily so that importing recipes stays light
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


def _data_config_cls() -> type:
    from vitkit.data import DataConfig

    return DataConfig


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------------------- typed parsing
def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML value to the type ``hint``; raise naming the key, the value and the expected type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {hint}")
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            fixed = origin is tuple and args and Ellipsis not in args
            if fixed and not isinstance(value, (dict, str)):  # `img_size: 32` means (32, 32)
                value = [value] * len(args)
            else:
                raise ValueError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and Ellipsis not in args:
            if len(value) != len(args):
                raise ValueError(f"{where}: expected {len(args)} values, got {list(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            inner = args[0] if args else Any
            items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, where)
    if hint in _SCALARS:
        return _scalar(value, hint, where)
    return value


_TRUE, _FALSE = ("true", "yes", "on"), ("false", "no", "off")
_SCALARS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _scalar(value: Any, hint: type, where: str) -> Any:
    """bool, int, float or str from YAML; numbers given as strings (YAML 1.1 reads "3e-4" as one) are parsed."""
    expected = _SCALARS[hint]
    if hint is bool:
        text = str(value).lower()
        if isinstance(value, bool) or (isinstance(value, str) and text in _TRUE + _FALSE):
            return value if isinstance(value, bool) else text in _TRUE
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            if hint is float:
                return float(value)
            if not isinstance(value, float) or value.is_integer():  # 3.0 is an integer, 2.5 is not
                return int(value)
        except ValueError:
            pass
    raise ValueError(f"{where}: expected {expected}, got {value!r}")


def _hints(cls: type) -> dict[str, Any]:
    extra = {"DataConfig": _data_config_cls()} if cls is Recipe else {}
    return typing.get_type_hints(cls, localns=extra)


def build_dataclass(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping; unknown keys raise listing the valid ones."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping of keys to values, got {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in '{where}'; valid keys: {sorted(names)}")
    values = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"invalid '{where}': {err}") from None


def _config_type(name: Any) -> type:
    """The config class of a registered model name; ViTConfig for anything else (checked when the model is built)."""
    from vitkit.registry import MODEL_CONFIGS

    return type(MODEL_CONFIGS[name]) if isinstance(name, str) and name in MODEL_CONFIGS else ViTConfig


def _model_section(data: Any) -> ModelSection:
    if data is None:
        return ModelSection()
    if isinstance(data, ModelSection):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"model: expected a mapping, got {data!r}")
    config_type = _config_type(data.get("name"))  # the named model's family (ViT, MAE, ...) types the overrides
    vit_hints = typing.get_type_hints(config_type)
    vit_fields = [f.name for f in dataclasses.fields(config_type)]
    unknown = sorted(set(data) - set(MODEL_KEYS) - set(vit_fields))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in 'model'; valid keys: {list(MODEL_KEYS)} and the {config_type.__name__} "
            f"fields {sorted(vit_fields)}"
        )
    overrides = {k: _coerce(v, vit_hints[k], f"model.{k}") for k, v in data.items() if k not in MODEL_KEYS}
    head = {k: data[k] for k in MODEL_KEYS if k in data}
    section = build_dataclass(ModelSection, head, "model")
    return dataclasses.replace(section, overrides=overrides)


def recipe_from_dict(data: dict[str, Any], name: str | None = None) -> Recipe:
    """Build a :class:`Recipe` from nested plain data, checking every key and type."""
    if not isinstance(data, dict):
        raise ValueError(f"a recipe is a mapping with sections {_SECTIONS}, got {type(data).__name__}")
    from vitkit.train.objectives.distill import distill_section

    data = distill_section(data)  # `distill:` is shorthand for `objective: {name: distillation, ...}`
    unknown = sorted(set(data) - {"name", *_SECTIONS})
    if unknown:
        raise ValueError(f"unknown top-level key(s) {unknown}; valid keys: {['name', *_SECTIONS]}")
    return Recipe(
        name=str(data.get("name") or name or "recipe"),
        model=_model_section(data.get("model")),
        data=build_dataclass(_data_config_cls(), data.get("data"), "data"),
        optim=build_dataclass(OptimConfig, data.get("optim"), "optim"),
        schedule=build_dataclass(ScheduleConfig, data.get("schedule"), "schedule"),
        train=build_dataclass(TrainConfig, data.get("train"), "train"),
        objective=_objective_section(data.get("objective")),
        adapter=build_dataclass(AdapterConfig, data.get("adapter"), "adapter"),
    )


def _objective_section(data: Any) -> dict[str, Any]:
    """``{"name": ..., **options}``, checked against the named objective's fields (classification by default)."""
    from vitkit.train.objectives import build_objective

    if data is not None and not isinstance(data, dict):
        raise ValueError(f"objective: expected a mapping such as {{name: classification}}, got {data!r}")
    return build_objective(data).options()


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
