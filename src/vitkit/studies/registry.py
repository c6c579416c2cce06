"""The studies as plug-ins: the modules of this package that define ``STUDY`` (a :class:`Study`), found by listing
the package, and those registered at run time from outside vitkit."""

from __future__ import annotations

from pathlib import Path

from vitkit.studies.base import Study
from vitkit.utils.plugins import PluginRegistry

_REGISTRY: PluginRegistry[Study] = PluginRegistry(
    "vitkit.studies", [str(Path(__file__).parent)], "STUDY", Study, "study"
)


def register_study(study: Study) -> Study:
    """Make ``study`` known to ``run_study`` and ``vitkit study`` by its ``name``."""
    return _REGISTRY.register(study)


def unregister_study(name: str) -> None:
    _REGISTRY.unregister(name)


def get_study(name: str) -> Study:
    """The study registered as ``name``; an unknown name raises listing the known ones."""
    return _REGISTRY.get(name)


def list_studies() -> list[Study]:
    """Every known study, by name."""
    return [_REGISTRY.get(name) for name in _REGISTRY.names()]
