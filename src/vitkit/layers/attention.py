"""Multi-head self-attention with a fused qkv projection (paper Appendix A), globally or inside windows.

The default path calls ``scaled_dot_product_attention`` so PyTorch picks the fastest kernel (flash or
memory-efficient attention). When the probabilities are wanted (visualisation), the same weights are used
in an explicit softmax(QK^T / sqrt(d)) so the fused path pays nothing for the option.

With ``window_size`` M, tokens attend only inside non-overlapping MxM windows of their (H, W) grid, as in the
plain-ViT detection backbones of ViTDet and ViT-Adapter (``WindowedAttention`` in ViT-Adapter's base/vit.py). A grid
that M does not divide is padded at the bottom and right with zeros *after* the qkv projection, and the padded
keys are not masked: they enter every softmax of a border window with a logit of 0 and a value of 0, exactly as
the original does, so that its checkpoints reproduce their outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.layers.window_attention import window_partition, window_reverse


def grid_windows(x: torch.Tensor, grid: tuple[int, int], window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H*W, C) tokens -> (B * nW, M*M, C) windows of the grid zero-padded to multiples of M, and the padded
    grid size."""
    B, N, C = x.shape
    H, W = grid
    if H * W != N:
        raise ValueError(f"windowed attention got {N} tokens for a {H}x{W} grid; pass the grid the tokens form")
    pad_h, pad_w = -H % window, -W % window
    x = x.reshape(B, H, W, C)
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return window_partition(x, window), (H + pad_h, W + pad_w)


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        window_size: int | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.window_size = window_size
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, return_attention: bool = False, grid: tuple[int, int] | None = None):
        """(B, N, D) -> (B, N, D); with ``return_attention`` also the probabilities (B, H, N, N), or
        (B * nW, H, M*M, M*M) per window. Windowed attention needs the token ``grid`` (rows, cols), N = rows * cols.
        """
        B, N, D = x.shape
        qkv = self.qkv(x)  # (B, N, 3D)
        if self.window_size is not None:
            if grid is None:
                raise ValueError("windowed attention needs the token grid: call attn(x, grid=(rows, cols))")
            qkv, padded = grid_windows(qkv, grid, self.window_size)  # (B * nW, M*M, 3D)
        Bw, T, _ = qkv.shape
        # (Bw, T, 3D) -> (3, Bw, H, T, D/H)
        q, k, v = qkv.reshape(Bw, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.attn_drop if self.training else 0.0
        if return_attention:
            attn = (q * self.scale @ k.transpose(-2, -1)).softmax(dim=-1)
            out = F.dropout(attn, dropout, self.training) @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        out = out.transpose(1, 2).reshape(Bw, T, D)
        if self.window_size is not None:  # (B * nW, M*M, D) -> (B, N, D), padding cropped
            out = window_reverse(out, self.window_size, *padded)[:, : grid[0], : grid[1]].reshape(B, N, D)
        out = self.proj_drop(self.proj(out))
        return (out, attn) if return_attention else out
