"""vitkit: Vision Transformers (Dosovitskiy et al., 2020) for PyTorch, exact, complete and fast.

The public API is imported lazily, so ``import vitkit`` stays quick and optional parts (training, plotting)
load only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

from vitkit.config import ViTConfig
from vitkit.layers.pos_embed import resample_pos_embed
from vitkit.models.vit import VisionTransformer
from vitkit.registry import count_parameters, get_config, list_models, register_model

__version__ = "0.1.0"

# name -> module that defines it; resolved on first access.
_LAZY = {
    "load_pretrained": "vitkit.weights",
    "save_pretrained": "vitkit.weights",
    "visualize": "vitkit.viz",
    "Recipe": "vitkit.train",
    "load_recipe": "vitkit.train",
    "train_model": "vitkit.train",
    "finetune": "vitkit.train",
    "Trainer": "vitkit.train",
    "evaluate": "vitkit.eval",
    "predict": "vitkit.eval",
    "fewshot_evaluate": "vitkit.eval",
    "DataConfig": "vitkit.data",
    "build_dataset": "vitkit.data",
    "create_loader": "vitkit.data",
    "BatchAugment": "vitkit.data",
    "preprocess": "vitkit.data",
    "optimize": "vitkit.fast",
}

__all__ = [
    "ViTConfig",
    "VisionTransformer",
    "count_parameters",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
    "resample_pos_embed",
    *_LAZY,
]


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> Any:
    """Build the model registered as ``name`` (``overrides`` are config fields); with ``pretrained=True`` load
    timm's published weights for it through the Hugging Face cache (``name.tag`` picks a tag, as in timm)."""
    if pretrained:
        from vitkit.weights.hub import load_hub_model

        return load_hub_model(name, **overrides)
    from vitkit.registry import create_model as build

    return build(name, **overrides)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vitkit' has no attribute {name!r}")
