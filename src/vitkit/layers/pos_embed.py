"""Position embeddings: fixed 1D and 2D sin-cos tables and 2D resampling of learned ones to a new patch grid.

Resampling is how the paper fine-tunes at a higher resolution (Sec. 3.2): the patch-grid part of the table
is interpolated in 2D while the entries of prefix tokens ([class], [dist]) are kept as they are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sincos_1d(length: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 1D sin-cos table (Vaswani et al. 2017, Sec. 3.5): (length, dim), PE[p, 2i] = sin(p / T^(2i/dim)) and
    PE[p, 2i+1] = cos(p / T^(2i/dim)), for positions p = 0 .. length-1 of the flattened (row-major) patch sequence."""
    if dim % 2:
        raise ValueError(f"sin-cos 1D position embeddings need an even width, got {dim}")
    pos = torch.arange(length, dtype=torch.float64)[:, None]  # (length, 1)
    omega = 1.0 / temperature ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim / 2,)
    angle = pos * omega  # (length, dim / 2)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).reshape(length, dim).float()  # interleaved sin, cos


def sincos_2d(grid: tuple[int, int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2D sin-cos table (MoCo v3 / MAE): (gh * gw, dim), a quarter of the width per sin/cos and axis."""
    if dim % 4:
        raise ValueError(f"sin-cos 2D position embeddings need a width divisible by 4, got {dim}")
    gh, gw = grid
    y, x = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    y = y.reshape(-1, 1) * omega
    x = x.reshape(-1, 1) * omega
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).float()


def resample_pos_embed(
    posemb: torch.Tensor,
    new_size: tuple[int, int],
    old_size: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Interpolate a (1, prefix + gh*gw, D) table to ``new_size``; prefix entries are kept unchanged.

    ``old_size`` may be left out for a square grid. Interpolation runs in float32 and returns the input dtype.
    """
    if posemb.ndim != 3:
        raise ValueError(f"expected a position table of shape (1, tokens, D), got {tuple(posemb.shape)}")
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    n = grid.shape[1]
    if old_size is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} grid tokens do not form a square grid; pass old_size=(rows, cols)")
        old_size = (side, side)
    if old_size[0] * old_size[1] != n:
        raise ValueError(f"old_size {old_size} holds {old_size[0] * old_size[1]} tokens but the table has {n}")
    new_size = (int(new_size[0]), int(new_size[1]))
    if tuple(old_size) == new_size:
        return posemb
    dim = posemb.shape[-1]
    # (1, gh*gw, D) -> (1, D, gh, gw)
    grid = grid.reshape(1, old_size[0], old_size[1], dim).permute(0, 3, 1, 2).float()
    smooth = interpolation in ("bilinear", "bicubic")
    grid = F.interpolate(
        grid, size=new_size, mode=interpolation, antialias=antialias and smooth, align_corners=False if smooth else None
    )
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_size[0] * new_size[1], dim).to(posemb.dtype)
    return torch.cat([prefix, grid], dim=1)


def resample_axis_embed(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly interpolate a per-axis table (1, n, d) to (1, length, d), for 'learned2d' embeddings."""
    if table.shape[1] == length:
        return table
    out = F.interpolate(table.transpose(1, 2).float(), size=length, mode="linear", align_corners=False)
    return out.transpose(1, 2).to(table.dtype)
