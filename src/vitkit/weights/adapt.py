"""The only place where checkpoint tensors change shape: position tables and classifier heads.

- Position embeddings are resampled in 2D to a new patch grid (paper Sec. 3.2, fine-tuning at a higher
  resolution), prefix entries ([class], [dist]) kept as they are; so are the relative position bias tables of
  pos_embed='relative' (BEiT), per block and head.
- Formats that add position embeddings to the patches only (big_vision, timm's ``no_embed_class``) get zero
  entries for the prefix tokens, which is exactly equivalent.
- A new number of classes drops the old head for a zero-initialised one (paper Sec. 3.2), with a log line.
"""

from __future__ import annotations

import logging
import math

import torch

from vitkit.config import ModelConfig, ViTConfig
from vitkit.layers.pos_embed import resample_axis_embed, resample_pos_embed
from vitkit.layers.relative_position import resample_bias_table
from vitkit.weights.errors import CheckpointError

log = logging.getLogger("vitkit.weights")

HEAD_PREFIXES = ("head.", "head_dist.")
PRE_LOGITS_PREFIX = "pre_logits."
RELATIVE_TABLE = ".attn.relative_position_bias_table"  # one per block with pos_embed='relative'


def position_grid(
    num_tokens: int, num_prefix: int, source: str, hint: tuple[int, int] | None = None
) -> tuple[tuple[int, int], bool]:
    """((rows, cols), whether the table includes prefix entries) for a table of ``num_tokens`` entries.

    ``hint`` (a grid from a named model) is used when it fits; otherwise the grid must be square.
    """
    for with_prefix in (True, False):
        n = num_tokens - num_prefix if with_prefix else num_tokens
        if hint is not None and hint[0] * hint[1] == n:
            return hint, with_prefix
    for with_prefix in (True, False):
        n = num_tokens - num_prefix if with_prefix else num_tokens
        side = math.isqrt(max(n, 0))
        if n > 0 and side * side == n:
            return (side, side), with_prefix
    raise CheckpointError(
        f"{source}: {num_tokens} position embeddings do not form a square patch grid (with or without "
        f"{num_prefix} prefix token(s)); name the model (model='vit_...') so its image size fixes the grid"
    )


def add_prefix_positions(pos_embed: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """(1, N, D) patch-only table -> (1, prefix + N, D) with zero rows for the prefix tokens."""
    if num_prefix == 0:
        return pos_embed
    return torch.cat([pos_embed.new_zeros(1, num_prefix, pos_embed.shape[-1]), pos_embed], dim=1)


def head_changed(src: ModelConfig, dst: ModelConfig) -> bool:
    """Whether loading ``src`` weights into a ``dst`` model needs a new classifier (any family)."""
    return getattr(src, "num_classes", None) != getattr(dst, "num_classes", None) or getattr(
        src, "representation_size", None
    ) != getattr(dst, "representation_size", None)


def drop_head(state: dict[str, torch.Tensor], src: ModelConfig, dst: ModelConfig) -> None:
    """Remove the classifier's tensors when the class count changes (a zero-initialised head replaces it)."""
    if not head_changed(src, dst):
        return
    dropped = [k for k in state if k.startswith(HEAD_PREFIXES)]
    for key in dropped:
        del state[key]
    n_src, n_dst = getattr(src, "num_classes", 0), getattr(dst, "num_classes", 0)
    if dropped and n_dst > 0:
        log.info("dropped the checkpoint's %d-class head for a new %d-class one (zero-initialised when built here)",
                 n_src, n_dst)  # fmt: skip
    elif dropped:
        log.info("dropped the checkpoint's %d-class head; the model returns features", n_src)


def adapt_vit(state: dict[str, torch.Tensor], src: ViTConfig, dst: ViTConfig) -> dict[str, torch.Tensor]:
    """The ViT family's shape adaptation: position tables to a new grid, pre-logits and head for a new task."""
    state = dict(state)
    if src.grid_size != dst.grid_size:
        _resample_positions(state, src, dst)
    if src.representation_size != dst.representation_size:
        dropped = [k for k in state if k.startswith(PRE_LOGITS_PREFIX)]
        for key in dropped:
            del state[key]
        if dropped:
            log.info("dropped the checkpoint's pre-logits layer (representation_size %s)", src.representation_size)
    if dst.fc_norm and not src.fc_norm and "norm.weight" in state:  # MAE fine-tuning: the final norm after pooling
        state = {("fc_norm." + k[5:] if k.startswith("norm.") else k): v for k, v in state.items()}
        log.info("moved the checkpoint's final LayerNorm after the pooling (fc_norm), as MAE fine-tunes")
    drop_head(state, src, dst)
    return state


def _resample_positions(state: dict[str, torch.Tensor], src: ViTConfig, dst: ViTConfig) -> None:
    """Learned position tensors to ``dst``'s grid, in place; fixed sin-cos tables are not saved (they are
    recomputed at the new grid)."""
    tables = [k for k in state if k.endswith(RELATIVE_TABLE)]
    what = "position embeddings"
    if src.pos_embed == "learned" and "pos_embed" in state:
        state["pos_embed"] = resample_pos_embed(
            state["pos_embed"], dst.grid_size, src.grid_size, num_prefix_tokens=src.num_prefix_tokens
        )
    elif src.pos_embed == "learned2d" and "pos_embed_row" in state:
        state["pos_embed_row"] = resample_axis_embed(state["pos_embed_row"], dst.grid_size[0])
        state["pos_embed_col"] = resample_axis_embed(state["pos_embed_col"], dst.grid_size[1])
    elif src.pos_embed == "relative" and tables:
        # BEiT's resize_rel_pos_bias_table: each (2Gh-1) x (2Gw-1) offset grid bicubically, prefix entries kept.
        for key in tables:
            state[key] = resample_bias_table(state[key], dst.grid_size, src.grid_size, src.num_prefix_tokens)
        what = f"{len(tables)} relative position bias tables (bicubic)"
    else:
        return
    log.info("resampled %s from a %dx%d to a %dx%d patch grid", what, *src.grid_size, *dst.grid_size)
