"""Loading a trained classifier and its class names for evaluation and prediction.

Everything goes through ``vitkit.load_pretrained``, so any checkpoint it reads works: a run's
``model.safetensors``, its training checkpoints (``checkpoints/last.pt``, EMA weights preferred, or ``best.pt``),
timm, Hugging Face or JAX files. Class names come from ``cfg.extra["classes"]``, where training records them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn


def load_classifier(path: str | Path, **overrides: Any) -> tuple[nn.Module, list[str]]:
    """(model in eval mode, class names); names fall back to '0', '1', ... when the checkpoint has none."""
    from vitkit.weights.hub import is_hub_name
    from vitkit.weights.load import load_pretrained

    if not Path(path).exists() and not is_hub_name(path):  # hub names (hf-hub:..., timm/...) resolve in the cache
        raise FileNotFoundError(f"checkpoint {path} not found")
    model = load_pretrained(str(path), **overrides)
    if getattr(model.cfg, "family", "vit") == "mae":  # a whole MAE where a classifier is expected: its encoder
        from vitkit.weights.mae import encoder_of

        model = encoder_of(model, str(path))
    cfg = model.cfg
    classes = [str(c) for c in cfg.extra.get("classes") or []]
    if len(classes) != cfg.num_classes:
        classes = [str(i) for i in range(cfg.num_classes)]
    return model.eval(), classes
