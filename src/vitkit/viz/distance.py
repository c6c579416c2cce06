"""Mean attention distance (paper Sec. 4.5, Fig. 7 right): how far across the image each head integrates.

For a query patch, the distance in pixels to every key patch is weighted by the attention it pays that key;
averaging over queries and images gives one number per layer and head, the analogue of a CNN's receptive field.
Only patch tokens take part: prefix tokens have no place in the image, so the patch-to-patch weights of each
query are re-normalised to sum to one.
"""

from __future__ import annotations

import torch
from torch import nn

from vitkit.viz.capture import iter_attention_maps, token_grid


def patch_distances(grid: tuple[int, int], patch_stride: tuple[int, int]) -> torch.Tensor:
    """(N, N) float64 Euclidean pixel distances between patch centres of a row-major ``grid``."""
    rows, cols = torch.meshgrid(
        torch.arange(grid[0], dtype=torch.float64), torch.arange(grid[1], dtype=torch.float64), indexing="ij"
    )
    centres = torch.stack([rows.flatten() * patch_stride[0], cols.flatten() * patch_stride[1]], dim=1)  # (N, 2)
    return torch.cdist(centres, centres)


def attention_distance_sum(
    attentions: torch.Tensor, grid: tuple[int, int], patch_stride: tuple[int, int], num_prefix_tokens: int
) -> torch.Tensor:
    """(L, B, heads, T, T) attention -> (L, heads) float64 distances summed over images and query patches."""
    p = num_prefix_tokens
    attn = attentions[..., p:, p:].double()  # (L, B, heads, N, N)
    if attn.shape[-1] != grid[0] * grid[1]:
        raise ValueError(f"{attn.shape[-1]} patch tokens do not fill a {grid[0]}x{grid[1]} grid")
    attn = attn / attn.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    per_query = (attn * patch_distances(grid, patch_stride)).sum(dim=-1)  # (L, B, heads, N)
    return per_query.sum(dim=(1, 3))


def mean_attention_distance(
    attentions: torch.Tensor, grid: tuple[int, int], patch_stride: tuple[int, int], num_prefix_tokens: int
) -> torch.Tensor:
    """(L, B, heads, T, T) attention -> (L, heads) mean attention distance in pixels, float64."""
    count = attentions.shape[1] * grid[0] * grid[1]
    return attention_distance_sum(attentions, grid, patch_stride, num_prefix_tokens) / count


def model_attention_distance(model: nn.Module, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """(L, heads) mean attention distance of ``model`` over normalised ``images`` (B, C, H, W), in pixels.

    Batches are reduced as they come, so 128 images of a large model fit in memory.
    """
    grid = token_grid(model, images)
    stride = model.cfg.patch_stride
    total = None
    for maps in iter_attention_maps(model, images, batch_size):
        part = attention_distance_sum(maps, grid, stride, model.num_prefix_tokens)
        total = part if total is None else total + part
    return total / (len(images) * grid[0] * grid[1])
