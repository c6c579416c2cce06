"""timm as a benchmark peer, imported without torchvision (never a vitkit dependency).

timm is installed with ``pip install --no-deps timm``; its import touches torchvision only for data transforms
and a frozen-BatchNorm class that a ViT never uses, so a stand-in package answers those imports with inert
placeholders. Nothing in a ViT forward reaches them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types


class _Inert:
    """Any attribute, call, subclass or subscript of a placeholder yields another placeholder."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __getattr__(self, name: str) -> _Inert:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert()

    def __call__(self, *args, **kwargs) -> _Inert:
        return _Inert()

    def __getitem__(self, key) -> _Inert:
        return _Inert()

    def __mro_entries__(self, bases) -> tuple[type, ...]:
        return (_Inert,)


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> _Inert:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert()


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandIn(spec.name)
        module.__path__ = []
        module.__version__ = "0.0.0+stand-in"
        return module

    def exec_module(self, module) -> None:
        pass


def import_timm():
    """Import timm, answering its torchvision imports with the stand-in when torchvision is absent."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        sys.meta_path.append(_Finder())
    import timm

    return timm


def timm_model(name: str):
    """timm's model of the same name with random weights (vitkit's registry names follow timm's)."""
    return import_timm().create_model(name, pretrained=False)
