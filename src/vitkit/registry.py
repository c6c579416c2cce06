"""Named models: the factory over the table of names in :mod:`vitkit.config.named`.

``create_model(name, **overrides)`` builds any family's model; ``count_parameters`` counts it on the meta device.
The table functions are re-exported here, where users have always found them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vitkit.config import ModelConfig
from vitkit.config.named import MODEL_CONFIGS, get_config, list_models, register_model

__all__ = ["MODEL_CONFIGS", "count_parameters", "create_model", "get_config", "list_models", "register_model"]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the model registered as ``name``; ``overrides`` are its config's fields (num_classes, img_size, ...).

    ``vitkit.create_model(name, pretrained=True)`` (the facade) also loads published weights; that lives above
    the registry, in :mod:`vitkit.weights.hub`, so the registry imports nothing of the weights layer.
    """
    return get_config(name, **overrides).build()


def count_parameters(cfg_or_name: ModelConfig | str) -> int:
    """Parameter count of a configuration, computed on the meta device (no memory, no initialisation cost)."""
    cfg = get_config(cfg_or_name) if isinstance(cfg_or_name, str) else cfg_or_name
    with torch.device("meta"):
        model = cfg.build()
    return sum(p.numel() for p in model.parameters())
