"""Architecture configs: one frozen dataclass per model family, importable without any model code.

A family's module here defines its config class and may define ``MODELS`` (registry name -> config); the named
table (:mod:`vitkit.config.named`) finds the modules by listing this package, so a new family adds a module and
nothing else changes here.
"""

from __future__ import annotations

from vitkit.config.base import ModelConfig, pair
from vitkit.config.vit import ACTIVATIONS, GLOBAL_POOLS, POS_EMBEDS, VARIANTS, ViTConfig

__all__ = ["ACTIVATIONS", "GLOBAL_POOLS", "POS_EMBEDS", "VARIANTS", "ModelConfig", "ViTConfig", "pair"]
