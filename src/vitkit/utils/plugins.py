"""What the two plug-in registries (model families, tasks) share: the built-in entries are the modules of a package
that define a named attribute (found by listing the package, so a new one is a new module and nothing else
changes), and entries from outside vitkit are added by name at run time."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class PluginRegistry(Generic[T]):
    """Name -> entry; ``package``'s modules defining ``attribute`` (an instance of ``kind``) are loaded on first use."""

    def __init__(self, package: str, paths: Iterable[str], attribute: str, kind: type, what: str) -> None:
        self.package, self.paths, self.attribute, self.kind, self.what = package, list(paths), attribute, kind, what
        self._entries: dict[str, T] = {}
        self._loaded = False

    def _load_builtin(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before importing: a descriptor module may itself ask the registry
        for info in sorted(pkgutil.iter_modules(self.paths), key=lambda m: m.name):
            entry = getattr(importlib.import_module(f"{self.package}.{info.name}"), self.attribute, None)
            if isinstance(entry, self.kind):
                self._entries.setdefault(entry.name, entry)

    def register(self, entry: T) -> T:
        if not isinstance(entry, self.kind) or not getattr(entry, "name", ""):
            raise TypeError(f"expected a named {self.kind.__module__}.{self.kind.__name__}, got {type(entry).__name__}")
        self._load_builtin()
        self._entries[entry.name] = entry  # type: ignore[attr-defined]
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        self._load_builtin()
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.what} {name!r}; this vitkit knows {sorted(self._entries)}") from None

    def names(self) -> list[str]:
        self._load_builtin()
        return sorted(self._entries)

    def values(self) -> list[T]:
        self._load_builtin()
        return list(self._entries.values())
