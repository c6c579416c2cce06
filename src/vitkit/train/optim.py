"""Optimisers and their parameter groups.

Weight decay skips every one-dimensional parameter (biases, LayerNorm scales and shifts) and whatever the model
lists in ``no_weight_decay()`` (class/distillation tokens, position embeddings), as in the reference ViT and DeiT
code. Layer-wise learning-rate decay (BEiT, Bao et al. 2021) gives block i of L the factor decay^(L + 1 - i), the
embedding decay^(L + 1) and the head 1, so fine-tuning moves early layers least.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from vitkit.train.recipe import OptimConfig

_EMBED = re.compile(r"^(cls_token|dist_token|reg_token|pos_embed\w*|patch_embed\.)")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def layer_id(name: str, depth: int) -> int:
    """0 for the embedding, i + 1 for block i, depth + 1 for the final norm and the head."""
    if _EMBED.match(name):
        return 0
    match = _BLOCK.match(name)
    if match:
        return int(match.group(1)) + 1
    return depth + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict[str, Any]]:
    """Trainable parameters split into groups by (decayed or not, layer); each group carries ``lr_scale``.

    The schedule multiplies its rate by ``lr_scale``, so layer-wise decay composes with any schedule.
    """
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    depth = len(model.blocks) if hasattr(model, "blocks") else 0
    groups: dict[tuple[bool, int], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = param.ndim > 1 and name not in skip and weight_decay > 0
        layer = layer_id(name, depth) if layer_decay is not None else 0
        key = (decay, layer)
        if key not in groups:
            scale = layer_decay ** (depth + 1 - layer) if layer_decay is not None else 1.0
            groups[key] = {
                "params": [],
                "names": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": float(scale),
            }
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
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    raise ValueError(f"unknown optimiser {cfg.name!r}; choose 'adamw' or 'sgd'")
