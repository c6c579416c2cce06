"""Model families as plug-ins: one :class:`Family` descriptor per family, and the registry that finds them.

The built-in families are the modules of this package that define ``FAMILY`` (found by listing the package, so a
new family is a new module here and nothing else changes); a family from outside vitkit is added with
:func:`register_family`. Everything that depends on what a family is goes through :func:`family_of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vitkit.config.base import ModelConfig
from vitkit.families.base import Adapt, Convert, Derive, Family, Reader, Write
from vitkit.utils.plugins import PluginRegistry
from vitkit.weights.errors import CheckpointError

__all__ = [
    "Adapt",
    "Convert",
    "Derive",
    "Family",
    "Reader",
    "Write",
    "adapt_state_dict",
    "build_model",
    "config_from_dict",
    "family_of",
    "get_family",
    "list_families",
    "readers_for",
    "register_family",
    "unregister_family",
]

_REGISTRY: PluginRegistry[Family] = PluginRegistry(__name__, __path__, "FAMILY", Family, "model family")


def register_family(family: Family, models: Mapping[str, ModelConfig] | None = None) -> Family:
    """Make ``family`` known to vitkit (``create_model``, ``load_pretrained``, training, adapters, ...), with its
    named ``models`` (registry name -> config) when given. Registering a name twice replaces the descriptor."""
    from vitkit.config.named import register_model

    _REGISTRY.register(family)
    for name, cfg in (models or {}).items():
        register_model(name, cfg)
    return family


def unregister_family(name: str) -> None:
    """Forget a family registered with :func:`register_family` and its named models (a plug-in's tests clean up)."""
    from vitkit.config.named import MODEL_CONFIGS

    for model in [n for n, c in MODEL_CONFIGS.items() if c.family == name]:
        del MODEL_CONFIGS[model]
    _REGISTRY.unregister(name)


def list_families() -> list[str]:
    return _REGISTRY.names()


def get_family(name: str) -> Family:
    """The descriptor registered as ``name``; an unknown name raises listing the known ones."""
    return _REGISTRY.get(name)


def family_of(obj: ModelConfig | nn.Module) -> Family:
    """The family of a config, or of a model built from one (its ``.cfg``)."""
    cfg = obj if isinstance(obj, ModelConfig) else getattr(obj, "cfg", None)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"expected a vitkit model or config, got {type(obj).__name__} (no vitkit config .cfg)")
    return get_family(cfg.family)


def build_model(cfg: ModelConfig) -> nn.Module:
    """The model ``cfg`` describes, freshly initialised, built by its family."""
    return family_of(cfg).build(cfg)


def config_from_dict(data: dict[str, Any], family: str = "vit") -> ModelConfig:
    """Rebuild a stored config of any family (``vit`` when a checkpoint predates families)."""
    return get_family(family).config_from_dict(data)


def readers_for(container: str) -> list[tuple[Family, Reader]]:
    """Every (family, reader) that reads files of ``container``, highest priority first."""
    found = [(f, r) for f in _REGISTRY.values() for r in f.readers if r.container == container]
    return sorted(found, key=lambda fr: -fr[1].priority)


def adapt_state_dict(state: dict[str, torch.Tensor], src: ModelConfig, dst: ModelConfig) -> dict[str, torch.Tensor]:
    """Reshape ``state`` (written for ``src``) for a model built from ``dst``, as the family says: grids, tables
    and heads only."""
    if src.family != dst.family:
        raise CheckpointError(
            f"a {src.family!r} checkpoint cannot load into a {dst.family!r} model; pick a {src.family} model name "
            "or a checkpoint of the right family"
        )
    return family_of(src).adapt(state, src, dst)
