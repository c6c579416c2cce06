"""Typed parsing of plain data (YAML, ``--set`` strings) into dataclasses: every key checked against its field,
every value converted to its field's type, each mistake one line naming the key, the value and what was expected.

Used for recipes, their sections and the objectives' options; it imports nothing of vitkit.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal


def coerce(value: Any, hint: Any, where: str) -> Any:
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
                return coerce(value, arg, where)
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
            items = [coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            inner = args[0] if args else Any
            items = [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
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


def build_dataclass(cls: type, data: Any, where: str, localns: dict[str, Any] | None = None) -> Any:
    """Instantiate dataclass ``cls`` from a mapping; unknown keys raise listing the valid ones. ``localns`` resolves
    type hints written as names the class's module does not import (a lazily typed field)."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls, localns=localns)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in '{where}'; valid keys: {sorted(names)}")
    values = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"invalid '{where}': {err}") from None


def check_keys(cls: type, data: Mapping[str, Any]) -> None:
    """A TypeError naming the keys of ``data`` that are not fields of dataclass ``cls``, and the valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TypeError(f"unknown {cls.__name__} field(s) {unknown}; valid fields: {sorted(known)}")


def strict_init(cls: type) -> type:
    """Class decorator for a dataclass: its ``__init__`` names the valid fields when given an unknown one (the
    generated one only says which keyword it did not expect)."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        check_keys(cls, kwargs)
        init(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls
