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
    from vitkit import load_pretrained

    if not Path(path).exists():
        raise FileNotFoundError(f"checkpoint {path} not found")
    model = load_pretrained(str(path), **overrides)
    cfg = model.cfg
    classes = [str(c) for c in cfg.extra.get("classes") or []]
    if len(classes) != cfg.num_classes:
        classes = [str(i) for i in range(cfg.num_classes)]
    return model.eval(), classes
