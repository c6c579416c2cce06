"""vitkit: Vision Transformers (Dosovitskiy et al., 2020) for PyTorch, exact, complete and fast.

The public API is imported lazily, so ``import vitkit`` (and ``import vitkit.data`` or ``vitkit.config``) loads no
model code, and optional parts (training, plotting) load only when used.
"""

from __future__ import annotations

from typing import Any

from vitkit.utils.lazy import lazy_attributes
from vitkit.version import __version__

# name -> module that defines it; resolved on first access.
_LAZY = {
    "ViTConfig": "vitkit.config",
    "VisionTransformer": "vitkit.models.vit",
    "resample_pos_embed": "vitkit.layers.pos_embed",
    "count_parameters": "vitkit.registry",
    "get_config": "vitkit.registry",
    "list_models": "vitkit.registry",
    "register_model": "vitkit.registry",
    "register_family": "vitkit.families",
    "load_pretrained": "vitkit.adapters.loading",  # with adapters=...; vitkit.weights.load_pretrained is the base
    "save_pretrained": "vitkit.weights",
    "visualize": "vitkit.viz.draw",
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

__all__ = ["__version__", "create_model", *_LAZY]


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> Any:
    """Build the model registered as ``name`` (``overrides`` are config fields; ``features_only=True`` and
    ``out_indices`` give a backbone's feature maps); with ``pretrained=True`` load timm's published weights for it
    through the Hugging Face cache (``name.tag`` picks a tag, as in timm)."""
    if pretrained:
        from vitkit.weights.load import load_hub_model

        return load_hub_model(name, **overrides)
    from vitkit.registry import create_model as build

    return build(name, **overrides)


__getattr__ = lazy_attributes("vitkit", _LAZY)
