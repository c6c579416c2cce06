"""Attention rollout (Abnar & Zuidema 2020), the method behind the ViT paper's attention figures (Fig. 6, App. D.8).

Each layer's attention is averaged over heads; the identity is added for the residual connection and the rows
are re-normalised, ``A_hat = (A + I) / rowsum``; the layers are multiplied, ``R = A_hat_L ... A_hat_1``, so
``R[i, j]`` is how much of output token i flows from input token j.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

HEAD_FUSIONS = ("mean", "max", "min")


def attention_rollout(
    attentions: torch.Tensor | Sequence[torch.Tensor], head_fusion: str = "mean", residual: bool = True
) -> torch.Tensor:
    """(L, B, heads, T, T) attention (or a list of (B, heads, T, T)) -> (B, T, T) rolled-out attention.

    ``head_fusion='mean'`` is the paper's choice; ``'max'``/``'min'`` are common variants that sharpen the map.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    stack = torch.stack(list(attentions)) if not isinstance(attentions, torch.Tensor) else attentions
    if stack.ndim != 5 or stack.shape[-1] != stack.shape[-2]:
        raise ValueError(f"expected attention of shape (layers, B, heads, T, T), got {tuple(stack.shape)}")
    stack = stack.double()
    fused = {"mean": stack.mean(dim=2), "max": stack.amax(dim=2), "min": stack.amin(dim=2)}[head_fusion]  # (L,B,T,T)
    eye = torch.eye(fused.shape[-1], dtype=fused.dtype)
    result = eye.expand_as(fused[0]).clone()  # (B, T, T)
    for layer in fused:
        layer = layer + eye if residual else layer
        layer = layer / layer.sum(dim=-1, keepdim=True)
        result = layer @ result  # later layers act on the left
    return result.float()


def rollout_map(
    rollout: torch.Tensor,
    grid: tuple[int, int],
    num_prefix_tokens: int,
    global_pool: str = "token",
    query: int | None = None,
) -> torch.Tensor:
    """(B, T, T) rollout -> (B, gh, gw): how much each patch feeds the representation the classifier reads.

    Token models read the class token (row 0); global-average-pooled models read the mean of the patch tokens,
    so their map is the mean over the patch rows. ``query`` (a token index) reads that token's row instead: where
    one patch looks. Prefix-token columns are dropped.
    """
    if query is not None:
        rows = rollout[:, query]  # (B, T)
    elif global_pool == "token":
        if num_prefix_tokens < 1:
            raise ValueError("global_pool='token' needs a class token; pass global_pool='avg' for pooled models")
        rows = rollout[:, 0]  # (B, T)
    elif global_pool == "avg":
        rows = rollout[:, num_prefix_tokens:].mean(dim=1)  # (B, T)
    else:
        raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
    patches = rows[:, num_prefix_tokens:]  # (B, N)
    if patches.shape[-1] != grid[0] * grid[1]:
        raise ValueError(f"{patches.shape[-1]} patch tokens do not fill a {grid[0]}x{grid[1]} grid")
    return patches.reshape(-1, *grid)


def query_attention(
    attention: torch.Tensor,
    grid: tuple[int, int],
    num_prefix_tokens: int,
    global_pool: str = "token",
    query: int | None = None,
) -> torch.Tensor:
    """One layer's (B, heads, T, T) attention -> (B, heads, gh, gw): where each head's readout query looks.

    The query is the class token, or for pooled models without one the mean over patch queries, or the token
    ``query`` (see :func:`point_token`).
    """
    rollout_like = attention.flatten(0, 1)  # (B*heads, T, T)
    maps = rollout_map(rollout_like, grid, num_prefix_tokens, global_pool, query)  # (B*heads, gh, gw)
    return maps.reshape(attention.shape[0], attention.shape[1], *grid)


def point_token(point: tuple[int, int], size: tuple[int, int], stride: tuple[int, int], num_prefix_tokens: int) -> int:
    """The index of the patch token under pixel ``point`` (y, x) of a ``size`` input with ``stride`` pixels per
    token; a point outside the image is a one-line error."""
    (y, x), (h, w) = point, size
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"point {point} lies outside the {h}x{w} input; give (y, x) pixels inside it")
    return num_prefix_tokens + (y // stride[0]) * (w // stride[1]) + x // stride[1]
