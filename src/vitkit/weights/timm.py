"""timm state dicts (``vit_*``, ``deit_*``, the R50 hybrid) -> vitkit, and back.

vitkit's state-dict names are timm's, so the tensors pass unchanged; the work is reading the architecture from
them. What the weights fix is read from them (width, depth, MLP width, patch size, classes, class / distillation
tokens, ``fc_norm``, pre-logits, hybrid stages); what they cannot fix (the number of heads) and the
preprocessing come from the named registry model, e.g. ``model="vit_small_patch16_224"``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

from vitkit.config import ViTConfig
from vitkit.weights.adapt import add_prefix_positions, position_grid
from vitkit.weights.errors import CheckpointError, block_problems
from vitkit.weights.rules import unsupported

log = logging.getLogger("vitkit.weights")

# Wrappers used by training scripts (timm's train.py, DeiT's main.py, DDP, torch.compile).
NESTED_KEYS = ("model", "state_dict", "module", "model_state_dict", "state_dict_ema", "model_ema")
STRIP_PREFIXES = ("module.", "_orig_mod.")
UNSUPPORTED = {
    ".ls1.": "layer scale (DeiT III / CaiT)",
    ".ls2.": "layer scale (DeiT III / CaiT)",
    "gamma_": "layer scale (DeiT III / CaiT)",
    "q_norm": "QK normalisation",
    "k_norm": "QK normalisation",
    "reg_token": "register tokens",
    "attn_pool": "attention-pooling head",
    "norm_pre": "pre-encoder LayerNorm (CLIP)",
    "mlp.norm": "MLP LayerNorm (scale_mlp_norm)",
    "attn.norm": "attention LayerNorm (scale_attn_norm)",
    "mask_token": "masked-image-modelling token",
}


def _vit_keys(depth: int, qkv_bias: bool) -> set[str]:
    names = {"norm1", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"}
    keys = {f"blocks.{i}.{n}.{w}" for i in range(depth) for n in names for w in ("weight", "bias")}
    keys |= {f"blocks.{i}.attn.qkv.weight" for i in range(depth)}
    keys |= {f"blocks.{i}.attn.qkv.bias" for i in range(depth)} if qkv_bias else set()
    keys |= {"cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    keys |= {f"{m}.{w}" for m in ("norm", "fc_norm", "pre_logits.fc", "head", "head_dist") for w in ("weight", "bias")}
    return keys


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The tensor dict inside a training checkpoint, without DDP / torch.compile prefixes."""
    for _ in range(3):  # {'model': {'module': {...}}} and similar
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            nested = next((obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), dict)), None)
            if nested is None:
                break
            obj = nested
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{source}: expected a state dict of tensors (possibly under one of {list(NESTED_KEYS)}), found {found}"
        )
    state = dict(obj)
    for prefix in STRIP_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def is_timm_layout(keys) -> bool:
    keys = set(keys)
    return "patch_embed.proj.weight" in keys and any(k.startswith("blocks.0.") for k in keys)


def _count(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _backbone_layers(state: dict[str, torch.Tensor]) -> tuple[int, ...] | None:
    if "patch_embed.backbone.conv.weight" in state:
        return ()  # a root-only ResNet (vit_tiny_r_s16_p8): the backbone is the stem itself
    if "patch_embed.backbone.stem.conv.weight" not in state:
        return None
    stages = _count(state, r"patch_embed\.backbone\.stages\.(\d+)\.")
    return tuple(_count(state, rf"patch_embed\.backbone\.stages\.{s}\.blocks\.(\d+)\.") for s in range(stages))


def convert_timm(
    state: dict[str, torch.Tensor],
    base: ViTConfig | None = None,
    num_heads: int | None = None,
    source: str = "timm state dict",
) -> tuple[dict[str, torch.Tensor], ViTConfig]:
    """timm tensors -> (vitkit state dict, config). Pure: builds no model.

    ``base`` is the named registry config (heads, preprocessing, numerics); ``num_heads`` overrides its heads.
    """
    if "patch_embed.proj.weight" not in state:
        raise CheckpointError(f"{source}: no 'patch_embed.proj.weight'; not a timm ViT state dict")
    heads = num_heads or (base.num_heads if base is not None else None)
    if heads is None:
        raise CheckpointError(
            f"{source}: a timm state dict does not record the number of attention heads; name the model "
            "(model='vit_small_patch16_224', see `vitkit models`) or pass num_heads=..."
        )
    depth = _count(state, r"blocks\.(\d+)\.")
    layers = _backbone_layers(state)
    qkv_bias = "blocks.0.attn.qkv.bias" in state
    expected = _vit_keys(depth, qkv_bias)
    leftover = sorted(k for k in state if k not in expected and not k.startswith("patch_embed.backbone."))
    if leftover:
        raise unsupported(leftover, source, UNSUPPORTED)
    if depth == 0:
        raise CheckpointError(f"{source}: no 'blocks.<i>.' entries; the state dict holds no Transformer layers")

    state = dict(state)
    proj = state["patch_embed.proj.weight"]  # (D, C, P, P)
    class_token, distilled = "cls_token" in state, "dist_token" in state
    fc_norm = "fc_norm.weight" in state
    prefix = int(class_token) + int(distilled)
    stride = 4 * 2 ** max(len(layers) - 1, 0) if layers is not None else 1
    patch = (stride * proj.shape[2], stride * proj.shape[3])  # pixels per token
    hint = None if base is None else (base.img_size[0] // patch[0], base.img_size[1] // patch[1])
    grid, with_prefix = position_grid(state["pos_embed"].shape[1], prefix, source, hint)
    if not with_prefix:  # timm's no_embed_class: position embeddings on patches only
        state["pos_embed"] = add_prefix_positions(state["pos_embed"], prefix)
    pool = "avg" if fc_norm or not class_token else (base.global_pool if base is not None else "token")
    stem = state.get("patch_embed.backbone.stem.conv.weight", state.get("patch_embed.backbone.conv.weight"))
    fields = dict(
        img_size=(grid[0] * patch[0], grid[1] * patch[1]),
        patch_size=tuple(proj.shape[2:]),
        in_chans=stem.shape[1] if stem is not None else proj.shape[1],
        embed_dim=proj.shape[0],
        depth=depth,
        num_heads=heads,
        mlp_dim=state["blocks.0.mlp.fc1.weight"].shape[0],
        qkv_bias=qkv_bias,
        class_token=class_token,
        distilled=distilled,
        global_pool=pool,
        fc_norm=fc_norm,
        representation_size=state["pre_logits.fc.weight"].shape[0] if "pre_logits.fc.weight" in state else None,
        num_classes=state["head.weight"].shape[0] if "head.weight" in state else 0,
        backbone_layers=layers,
        backbone_width=stem.shape[0] if stem is not None else 64,
        pos_embed="learned",
    )
    cfg = base.replace(**fields) if base is not None else ViTConfig(**fields)
    return state, cfg


def to_timm(state: dict[str, torch.Tensor], cfg: ViTConfig) -> dict[str, torch.Tensor]:
    """vitkit -> timm: the same tensors, after checking that timm's ViT can represent the model.

    Numerics a state dict cannot carry (GELU variant, epsilons) are logged, since timm's defaults differ.
    """
    problems = block_problems(cfg, "timm")
    if cfg.stem_channels is not None:
        problems.append("a convolutional stem (stem_channels)")
    if problems:
        raise CheckpointError(f"cannot write a timm state dict for this model: {'; '.join(problems)}")
    if cfg.act_layer != "gelu" or cfg.norm_eps != 1e-6:
        log.warning(
            "timm's ViT uses exact GELU and LayerNorm eps 1e-6; this model uses %s and eps %g: build the timm "
            "model with act_layer / norm_layer to match, or expect small differences",
            cfg.act_layer,
            cfg.norm_eps,
        )
    if cfg.backbone_layers is not None:
        log.warning("timm's hybrid stem uses GroupNorm eps 1e-5 and weight-standardisation eps 1e-8 (vitkit: JAX's)")
    return dict(state)
