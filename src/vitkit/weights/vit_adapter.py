"""ViT-Adapter checkpoints: the original's backbone keys <-> vitkit's, and a plain ViT's weights as the ViT part.

The original (czczup/ViT-Adapter, mmseg) saves a whole segmentor; its backbone's tensors sit under ``backbone.``::

    patch_embed.proj.*, pos_embed (1, 1 + N, D; the first row unused), blocks.{i}.{norm1, attn.qkv, attn.proj,
    norm2, mlp.fc1, mlp.fc2}.*, blocks.{i}.gamma1/gamma2 (layer scale, detection configs), level_embed, spm.*,
    interactions.{j}.{injector, extractor, extra_extractors.{k}}.*, up.*, norm1..norm4.* (SyncBatchNorm)

(``decode_head.*`` and ``auxiliary_head.*`` belong to the heads). vitkit's ViTAdapter keeps every one of these
names except layer scale's, which vitkit's Block spells as timm does; :data:`RENAMES` is the whole difference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from vitkit.config.vit_adapter import ViTAdapterConfig
from vitkit.models.vit_adapter import resample_grid
from vitkit.weights.adapt import position_grid
from vitkit.weights.errors import CheckpointError

BACKBONE_PREFIX = "backbone."
# (original backbone key, vitkit key); ``{i}`` is a block index. Keys not listed are the same on both sides.
RENAMES: tuple[tuple[str, str], ...] = (
    ("blocks.{i}.gamma1", "blocks.{i}.ls1.gamma"),
    ("blocks.{i}.gamma2", "blocks.{i}.ls2.gamma"),
)
# Parts of a plain ViT that the adapter does not have: its class/distillation tokens, final norm and heads.
VIT_ONLY = ("cls_token", "dist_token", "reg_token", "norm.", "fc_norm.", "head.", "head_dist.", "pre_logits.")


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(re.escape("{i}"), r"(\d+)") + "$")


def _rename(key: str, direction: int) -> str:
    """``key`` renamed original -> vitkit (direction 0 -> 1) or back (1 -> 0) by :data:`RENAMES`."""
    for pair in RENAMES:
        match = _pattern(pair[1 - direction]).match(key)
        if match:
            return pair[direction].replace("{i}", match.group(1)) if match.groups() else pair[direction]
    return key


def from_original(state: Mapping[str, torch.Tensor], prefix: str = BACKBONE_PREFIX) -> dict[str, torch.Tensor]:
    """The original's backbone tensors -> vitkit ViTAdapter keys. A whole segmentor's state dict gives its
    ``prefix`` (``backbone.``) part; a bare backbone state dict is taken as it is. Pure: builds no model."""
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return {_rename(k, 1): v for k, v in state.items()}


def to_original(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """vitkit ViTAdapter tensors -> the original's backbone keys (under ``prefix``, e.g. ``backbone.``)."""
    return {prefix + _rename(k, 0): v for k, v in state.items()}


# mmseg ``backbone=dict(type="ViTAdapter", ...)`` arguments that map one-to-one onto ViTAdapterConfig fields.
_SAME_FIELDS = (
    "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "qkv_bias", "drop_path_rate", "pretrain_size",
    "conv_inplane", "n_points", "deform_num_heads", "deform_ratio", "init_values", "interaction_indexes",
    "with_cffn", "cffn_ratio", "add_vit_feature", "use_extra_extractor",
)  # fmt: skip


def config_from_mmseg(backbone: Mapping[str, Any], **fields: Any) -> ViTAdapterConfig:
    """An original config's ``backbone`` dict (the ``ViTAdapter`` constructor's arguments) -> ViTAdapterConfig.

    Its ``img_size`` is the ViT's position-table size (``pretrain_size`` here, which it must equal); the input size
    and preprocessing are not backbone arguments and come in ``fields`` (``img_size=512, mean=..., std=...``).
    """
    args = {k: v for k, v in backbone.items() if k not in ("type", "pretrained", "with_cp", "_delete_")}
    out = {k: args.pop(k) for k in _SAME_FIELDS if k in args}
    if "img_size" in args and args.pop("img_size") != out.get("pretrain_size", 224):
        raise CheckpointError("the backbone's img_size and pretrain_size differ; the original needs them equal")
    if "mlp_ratio" in args:
        out["mlp_dim"] = int(out.get("embed_dim", 768) * args.pop("mlp_ratio"))
    if args.pop("layer_scale", False):
        out["layer_scale"] = 1.0  # the original's gamma1/gamma2 start at ones
    windowed, sizes = args.pop("window_attn", False), args.pop("window_size", 14)
    depth = out.get("depth", 12)
    windowed = list(windowed) if isinstance(windowed, (list, tuple)) else [bool(windowed)] * depth
    sizes = {s for s, w in zip(sizes if isinstance(sizes, (list, tuple)) else [sizes] * depth, windowed) if w}
    if len(sizes) > 1:
        raise CheckpointError(f"windowed blocks use window sizes {sorted(sizes)}; vitkit supports one window size")
    if any(windowed):
        out.update(window_attn=tuple(windowed), window_size=sizes.pop())
    for rate in ("drop_rate", "attn_drop_rate"):  # dropout vitkit's adapter does not have: only 0 is exact
        if args.get(rate, 0.0) == 0.0:
            args.pop(rate, None)
    if args:
        raise CheckpointError(f"ViT-Adapter backbone arguments vitkit does not support: {args}")
    return ViTAdapterConfig(**{**out, **fields})


def vit_to_adapter(
    state: Mapping[str, torch.Tensor], cfg: ViTAdapterConfig, source: str = "ViT state dict"
) -> dict[str, torch.Tensor]:
    """A plain vitkit (or timm) ViT's tensors -> the ViT part of a ViTAdapter built from ``cfg``.

    Patch embedding and blocks keep their names; the class and distillation tokens, final norm and heads are
    dropped; the position table's patch grid is resampled (plain bicubic, as the original's loader) to ``cfg``'s
    pre-training grid, behind one prefix row (the class token's entry when there is one, else zeros). The
    adapter's own parts are not in the result: load it with ``strict=False`` and they keep their initialisation.
    """
    proj = state.get("patch_embed.proj.weight")
    if proj is None or "pos_embed" not in state:
        raise CheckpointError(f"{source}: no 'patch_embed.proj.weight' or 'pos_embed'; expected a vitkit/timm ViT")
    expected = (cfg.embed_dim, cfg.in_chans, *cfg.patch_size)
    if tuple(proj.shape) != expected:
        raise CheckpointError(
            f"{source}: patch projection {tuple(proj.shape)} does not fit the adapter's {expected} (width, "
            "channels, patch); pick a ViT-Adapter of the ViT's size"
        )
    depth = len({m.group(1) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    if depth != cfg.depth:
        raise CheckpointError(f"{source}: {depth} blocks, but the adapter's ViT has {cfg.depth}; pick a matching size")
    if cfg.layer_scale is None and any(".ls1." in k for k in state):
        raise CheckpointError(f"{source}: the ViT has layer scale (ls1/ls2); build the adapter with layer_scale set")
    prefix = int("cls_token" in state) + int("dist_token" in state)
    table = state["pos_embed"]  # (1, [prefix +] N, D)
    grid, with_prefix = position_grid(table.shape[1], prefix, source)
    patches = table[:, prefix:] if with_prefix else table
    first = table[:, :1] if with_prefix and prefix else table.new_zeros(1, 1, table.shape[-1])
    out = {k: v for k, v in state.items() if not k.startswith(VIT_ONLY) and k != "pos_embed"}
    out["pos_embed"] = torch.cat([first, resample_grid(patches, grid, cfg.pretrain_grid)], dim=1)
    return out


def adapt_vit_adapter(
    state: Mapping[str, torch.Tensor], src: ViTAdapterConfig, dst: ViTAdapterConfig
) -> dict[str, torch.Tensor]:
    """Weights written for ``src`` reshaped for a model built from ``dst``: the position table resampled (plain
    bicubic) from one pre-training grid to the other, its unused first row kept. Nothing else depends on sizes."""
    out = dict(state)
    if "pos_embed" in out and src.pretrain_grid != dst.pretrain_grid:
        table = out["pos_embed"]
        patches = resample_grid(table[:, 1:], src.pretrain_grid, dst.pretrain_grid)
        out["pos_embed"] = torch.cat([table[:, :1], patches], dim=1)
    return out
