"""What every architecture config shares: frozen, strict about field names, JSON round-trip, and a family name.

Configs are plain data: the family name (``"vit"``, ``"swin"``, ...) is what checkpoints store, and the family's
descriptor (:mod:`vitkit.families`) knows which model class a config builds. This package imports nothing else
of vitkit; it sits at the bottom of the dependency order (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


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
    """Mixin for a frozen dataclass describing one architecture; subclasses set ``family``, the name stored in
    checkpoints and registered by the family's descriptor."""

    family: ClassVar[str] = ""

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


def _listify(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_listify(v) for v in value]
    return value
