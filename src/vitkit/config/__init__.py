"""Architecture configs: one frozen dataclass per model family, each importable without torch models.

A new family adds a module here with its config class and its named table ``MODELS`` (registry name ->
config), and one entry in :data:`FAMILY_MODULES`; :mod:`vitkit.registry` merges the tables.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vitkit.config.base import CONFIG_TYPES, ModelConfig, config_from_dict, pair
from vitkit.config.vit import ACTIVATIONS, GLOBAL_POOLS, POS_EMBEDS, VARIANTS, ViTConfig

# One module per family; each defines a ModelConfig subclass and may define MODELS (name -> config).
FAMILY_MODULES: tuple[str, ...] = (
    "vitkit.config.vit",
    "vitkit.config.mae",
    "vitkit.config.swin",
    "vitkit.config.resnet",
)


def family_modules() -> list[ModuleType]:
    """The family modules, imported (which also registers their config classes)."""
    return [importlib.import_module(name) for name in FAMILY_MODULES]


family_modules()

__all__ = [
    "ACTIVATIONS",
    "CONFIG_TYPES",
    "FAMILY_MODULES",
    "GLOBAL_POOLS",
    "POS_EMBEDS",
    "VARIANTS",
    "ModelConfig",
    "ViTConfig",
    "config_from_dict",
    "family_modules",
    "pair",
]
