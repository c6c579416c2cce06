"""Package attributes that load their module on first use (PEP 562), so that importing one module of a package does
not import the rest: a package whose low modules (converters, metrics, losses) sit under others' layers and whose
high ones (loading chains, commands) sit above them keeps that order only if its ``__init__`` imports neither."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``name`` from ``table[name]`` (a module path) on first access."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
