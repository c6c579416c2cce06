"""What the embeddings learned (paper Sec. 4.5, Fig. 7 left and centre).

* Position-embedding similarity: the cosine similarity of each patch's position embedding with every other
  patch's; a trained model shows 2D locality with row and column structure. A model with a relative position bias
  (pos_embed='relative', paper App. D.4) has no embedding to compare; its analogue is the bias each patch gives
  every other patch, averaged over heads and blocks.
* Patch-embedding filters: the principal components of the linear projection E's filters, which resemble
  plausible basis functions for the fine structure inside each patch.
"""

from __future__ import annotations

import torch
from torch import nn

from vitkit.layers.patch_embed import PatchEmbed

NOTHING_TO_DRAW = "this model has no position embeddings (pos_embed='none'): nothing to compare"


def patch_position_embeddings(model: nn.Module) -> torch.Tensor:
    """(gh, gw, D) position embedding of each patch at the model's own grid, for every ``pos_embed`` kind.

    'learned' tables are read as stored, 'learned2d' ones are assembled from their row and column halves and
    'sincos1d' / 'sincos2d' ones are the fixed table; prefix-token entries are dropped.
    """
    cfg = model.cfg
    if cfg.pos_embed == "none":
        raise ValueError(NOTHING_TO_DRAW)
    if cfg.pos_embed == "relative":
        raise ValueError(
            "pos_embed='relative' adds no embedding to the tokens (the bias is in attention); use relative_bias_maps"
        )
    grid = cfg.grid_size
    table = model.position_table(grid)  # (1, prefix + gh*gw, D): the table forward() adds, whatever its kind
    return table[0, model.num_prefix_tokens :].detach().float().cpu().reshape(*grid, -1)


def relative_bias_maps(model: nn.Module) -> torch.Tensor:
    """(gh, gw, gh, gw) relative position bias of a pos_embed='relative' model: entry [i, j] is the logit bias that
    patch (i, j), as query, adds for every key patch, averaged over heads and blocks (prefix tokens dropped)."""
    bias = model.position_bias()  # (L, H, T, T) at the model's own grid, or None
    if bias is None:
        raise ValueError(f"this model has no relative position bias (pos_embed={model.cfg.pos_embed!r})")
    p = model.num_prefix_tokens
    mean = bias[:, :, p:, p:].detach().double().mean(dim=(0, 1)).cpu()  # (N, N)
    return mean.reshape(*model.cfg.grid_size, *model.cfg.grid_size).float()


def position_similarity(model: nn.Module) -> torch.Tensor:
    """(gh, gw, gh, gw) maps, entry [i, j] that of patch (i, j) against all patches: the cosine similarity of the
    position embeddings, or for pos_embed='relative' the bias of :func:`relative_bias_maps`."""
    if model.cfg.pos_embed == "relative":
        return relative_bias_maps(model)
    emb = patch_position_embeddings(model).double()  # (gh, gw, D)
    gh, gw, dim = emb.shape
    flat = emb.reshape(gh * gw, dim)
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (unit @ unit.T).reshape(gh, gw, gh, gw).float()


def filter_components(model: nn.Module, count: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading principal components of the patch-embedding filters: ((k, C, P, P), explained-variance ratio (k,)).

    Each of the D filters is a (C, P, P) patch; after removing the mean filter, the right singular vectors of
    the (D, C*P*P) matrix are orthonormal directions ordered by the variance they explain. ``count`` is capped
    at min(D, C*P*P); the paper shows 28.
    """
    embed = model.patch_embed
    if not isinstance(embed, PatchEmbed):
        raise ValueError(
            "filters need a linear patch projection on pixels; this model embeds CNN features (hybrid), "
            "whose first layer is a ResNet stem"
        )
    weight = embed.proj.weight.detach().double().cpu()  # (D, C, P, P)
    flat = weight.flatten(1)  # (D, C*P*P)
    centred = flat - flat.mean(dim=0, keepdim=True)
    _, sv, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (min(D, CPP), CPP), rows orthonormal
    k = min(count, vh.shape[0])
    variance = sv.square()
    ratio = variance[:k] / variance.sum().clamp_min(1e-300)
    return vh[:k].reshape(k, *weight.shape[1:]).float(), ratio.float()
