"""Named models: the factory over the table of names in :mod:`vitkit.config.named`.

``create_model(name, **overrides)`` builds any family's model through its descriptor; ``features_only=True``
gives the backbone's feature maps instead (:class:`vitkit.models.features.FeatureExtractor`);
``count_parameters`` counts a model on the meta device. The table functions are re-exported here, where users
have always found them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vitkit.config import ModelConfig
from vitkit.config.named import MODEL_CONFIGS, get_config, list_models, register_model
from vitkit.families import build_model

__all__ = ["MODEL_CONFIGS", "count_parameters", "create_model", "get_config", "list_models", "register_model"]


def create_model(
    name: str, *, features_only: bool = False, out_indices: Sequence[int] | None = None, **overrides: Any
) -> nn.Module:
    """Build the model registered as ``name``; ``overrides`` are its config's fields (num_classes, img_size, ...).

    With ``features_only=True`` the model is built without a head and wrapped so that ``forward`` returns the NCHW
    feature maps of ``out_indices`` (blocks of a ViT, stages of Swin and ResNetV2, levels of ViT-Adapter), with
    their channels and strides in ``feature_info``. ``vitkit.create_model(name, pretrained=True)`` (the facade)
    also loads published weights; that lives above the registry, in :mod:`vitkit.weights.hub`.
    """
    cfg = get_config(name, **overrides)
    if not features_only:
        if out_indices is not None:
            raise ValueError("out_indices selects feature maps; pass it with features_only=True")
        return build_model(cfg)
    from vitkit.models.features import FeatureExtractor

    if "num_classes" in {f for f in getattr(cfg, "__dataclass_fields__", {})} and "num_classes" not in overrides:
        cfg = cfg.replace(num_classes=0)
    return FeatureExtractor(build_model(cfg), out_indices)


def count_parameters(cfg_or_name: ModelConfig | str) -> int:
    """Parameter count of a configuration, computed on the meta device (no memory, no initialisation cost)."""
    cfg = get_config(cfg_or_name) if isinstance(cfg_or_name, str) else cfg_or_name
    with torch.device("meta"):
        model = build_model(cfg)
    return sum(p.numel() for p in model.parameters())
