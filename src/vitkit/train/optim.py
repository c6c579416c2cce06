"""Optimisers and their parameter groups, from what the model offers (timm's method names), for any model.

Weight decay skips every one-dimensional parameter (biases, norm scales and shifts) and whatever the model lists
in ``no_weight_decay()`` (class/distillation tokens, position embeddings), as in the reference ViT and DeiT code.
Layer-wise learning-rate decay (BEiT, Bao et al. 2021) needs the model's ``group_matcher()``: its groups, in
order, get layer ids 0..L+1 and layer i the factor decay^(L + 1 - i), so fine-tuning moves early layers least.
Only parameters with ``requires_grad`` are optimised (frozen backbones, adapters).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn

from vitkit.train.recipe import OptimConfig

_JOIN_PREVIOUS = 99999.0  # timm's MATCH_PREV_GROUP: a suffix that merges a match into the group before it


def layer_ids(model: nn.Module) -> dict[str, int]:
    """Parameter name -> layer id from ``model.group_matcher(coarse=False)``, numbered as timm numbers them.

    Each matcher entry is a regex (or a list of ``(regex, suffix)``); a match sorts by (entry order, the regex's
    captured numbers, suffix); names no entry matches (the head) come last.
    """
    if not hasattr(model, "group_matcher"):
        raise ValueError(
            f"optim.layer_decay needs layer groups, but {type(model).__name__} has no group_matcher() method; "
            "add one (timm's convention) or set optim.layer_decay: null"
        )
    rules = []
    for ordinal, spec in enumerate(model.group_matcher(coarse=False).values()):
        for pattern, suffix in [(spec, None)] if isinstance(spec, str) else spec:
            rules.append((re.compile(pattern), float(ordinal), tuple(suffix or ())))

    def key(name: str) -> tuple[float, ...]:
        for regex, ordinal, suffix in rules:
            match = regex.match(name)
            if match:
                return (ordinal, *(float(g) for g in match.groups() if g is not None), *suffix)
        return (math.inf,)

    keys = {name: key(name) for name, _ in model.named_parameters()}
    ids, layer = {}, -1
    for k in sorted(set(keys.values())):
        if layer < 0 or k[-1] != _JOIN_PREVIOUS:
            layer += 1
        ids[k] = layer
    return {name: ids[k] for name, k in keys.items()}


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict[str, Any]]:
    """Trainable parameters split into groups by (decayed or not, layer); each group carries ``lr_scale``.

    The schedule multiplies its rate by ``lr_scale``, so layer-wise decay composes with any schedule.
    """
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    layers = layer_ids(model) if layer_decay is not None else {}
    last = max(layers.values(), default=0)
    groups: dict[tuple[bool, int], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = param.ndim > 1 and name not in skip and weight_decay > 0
        layer = layers.get(name, 0)
        key = (decay, layer)
        if key not in groups:
            scale = layer_decay ** (last - layer) if layer_decay is not None else 1.0
            groups[key] = {"params": [], "names": [], "weight_decay": weight_decay if decay else 0.0,
                           "lr_scale": float(scale)}  # fmt: skip
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[1], k[0]))]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay) or SGD with momentum over :func:`param_groups`."""
    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters; unfreeze some before training")
    for group in groups:
        group["lr"] = cfg.lr * group["lr_scale"]
    if cfg.name == "adamw":
        fused = all(p.is_cuda for g in groups for p in g["params"]) or None  # one fused kernel per step on CUDA
        return torch.optim.AdamW(
            groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=fused
        )
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    raise ValueError(f"unknown optimiser {cfg.name!r}; choose 'adamw' or 'sgd'")
