"""What every architecture config shares: frozen, strict about field names, JSON round-trip, and a family.

A family ("vit", "swin", "mae", ...) names one model class. Configs are plain data; the model class is imported
only when :meth:`ModelConfig.build` runs, so this package imports nothing else of vitkit (configs sit at the
bottom of the dependency order: cli -> train -> eval/viz -> weights/data -> models -> layers -> config).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, ClassVar

from torch import nn

CONFIG_TYPES: dict[str, type[ModelConfig]] = {}  # family -> config class, filled as each family module loads


def pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``7`` -> ``(7, 7)``; a pair stays a pair (as ints); anything else is an error."""
    if isinstance(value, int):
        return (value, value)
    out = tuple(int(v) for v in value)
    if len(out) != 2:
        raise ValueError(f"expected an int or a pair of ints, got {value!r}")
    return out  # type: ignore[return-value]


def check_rates(cfg: object, *names: str) -> None:
    """Every named dropout-style rate of ``cfg`` lies in [0, 1); otherwise one line naming the field."""
    for name in names:
        rate = getattr(cfg, name)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name} must lie in [0, 1), got {rate}")


class ModelConfig:
    """Mixin for a frozen dataclass describing one architecture.

    Subclasses set ``family`` (the name stored in checkpoints) and ``model_class`` (``"module:Class"``, whose
    constructor takes the config as its only argument).
    """

    family: ClassVar[str] = ""
    model_class: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.family:
            CONFIG_TYPES[cls.family] = cls

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed; an unknown field name raises instead of vanishing."""
        known = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown {type(self).__name__} field(s) {unknown}; valid fields: {sorted(known)}")
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists), the form stored in checkpoint metadata."""
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: _listify(v) for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming the valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**data)

    def build(self) -> nn.Module:
        """The model this config describes, freshly initialised."""
        module, _, name = self.model_class.partition(":")
        return getattr(importlib.import_module(module), name)(self)


def _listify(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_listify(v) for v in value]
    return value


def config_from_dict(data: dict[str, Any], family: str = "vit") -> ModelConfig:
    """Rebuild a stored config of any family (``vit`` when a checkpoint predates families)."""
    try:
        cls = CONFIG_TYPES[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; this vitkit knows {sorted(CONFIG_TYPES)}") from None
    return cls.from_dict(data)
