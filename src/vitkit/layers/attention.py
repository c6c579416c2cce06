"""Multi-head self-attention with a fused qkv projection (paper Appendix A), globally or inside windows.

The default path calls ``scaled_dot_product_attention`` so PyTorch picks the fastest kernel (flash or
memory-efficient attention). When the probabilities are wanted (visualisation), the same weights are used
in an explicit softmax(QK^T / sqrt(d)) so the fused path pays nothing for the option.

With ``window_size`` M, tokens attend only inside non-overlapping MxM windows of their (H, W) grid, as in the
plain-ViT detection backbones of ViTDet and ViT-Adapter (``WindowedAttention`` in ViT-Adapter's base/vit.py). A grid
that M does not divide is padded at the bottom and right with zeros *after* the qkv projection, and the padded
keys are not masked: they enter every softmax of a border window with a logit of 0 and a value of 0, exactly as
the original does, so that its checkpoints reproduce their outputs.

With ``relative_grid`` (Gh, Gw), every head adds a learned relative position bias B to its logits, as BEiT's
global attention does (``relative_position_bias_table``, timm's name): softmax(QK^T / sqrt(d) + B) V, B looked up
by the 2D offset between two patches, with shared entries for the prefix tokens (``layers/relative_position.py``).
The fused path passes B as a float ``attn_mask``, the explicit path adds it before the softmax, so captured
probabilities include it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.layers.relative_position import (
    gather_bias,
    relative_position_index,
    relative_table_size,
    resample_bias_table,
)
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
        relative_grid: tuple[int, int] | None = None,
        num_prefix_tokens: int = 0,
    ) -> None:
        super().__init__()
        if window_size is not None and relative_grid is not None:
            raise ValueError("a relative position bias over the whole grid and windowed attention do not combine")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.window_size = window_size
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_grid = None if relative_grid is None else (int(relative_grid[0]), int(relative_grid[1]))
        self.num_prefix_tokens = num_prefix_tokens
        if self.relative_grid is not None:
            rows = relative_table_size(self.relative_grid, num_prefix_tokens)
            self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
            # Fixed by the grid, so not saved (as in timm's BEiT and vitkit's Swin).
            index = relative_position_index(self.relative_grid, num_prefix_tokens)
            self.register_buffer("relative_position_index", index, persistent=False)

    def position_bias(self, grid: tuple[int, int] | None = None) -> torch.Tensor | None:
        """(H, T, T) relative position bias for the token ``grid`` (default: the grid it was built for), the table
        resampled bicubically for another grid; None without a relative bias."""
        if self.relative_grid is None:
            return None
        grid = self.relative_grid if grid is None else (int(grid[0]), int(grid[1]))
        if grid == self.relative_grid:
            return gather_bias(self.relative_position_bias_table, self.relative_position_index)
        table = resample_bias_table(self.relative_position_bias_table, grid, self.relative_grid, self.num_prefix_tokens)
        return gather_bias(table, relative_position_index(grid, self.num_prefix_tokens, device=table.device))

    def _logit_bias(self, tokens: int, grid: tuple[int, int] | None) -> torch.Tensor | None:
        """(1, H, T, T) bias for ``tokens`` tokens (4D, as ONNX's attention export wants), or None."""
        bias = self.position_bias(grid)
        if bias is not None and bias.shape[-1] != tokens:
            grid = grid or self.relative_grid
            raise ValueError(
                f"the relative position bias covers {self.num_prefix_tokens} prefix token(s) and a {grid[0]}x{grid[1]} "
                f"grid ({bias.shape[-1]} tokens) but attention got {tokens}; pass the tokens' grid, and do not add "
                "tokens (prompts) to a model with pos_embed='relative'"
            )
        return None if bias is None else bias.unsqueeze(0)

    def forward(self, x: torch.Tensor, return_attention: bool = False, grid: tuple[int, int] | None = None):
        """(B, N, D) -> (B, N, D); with ``return_attention`` also the probabilities (B, H, N, N), or
        (B * nW, H, M*M, M*M) per window. Windowed attention needs the token ``grid`` (rows, cols), N = rows * cols;
        a relative bias uses it (prefix + rows * cols = N) when it differs from the grid the bias was built for.
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
        bias = self._logit_bias(T, grid)  # (1, H, T, T) or None
        dropout = self.attn_drop if self.training else 0.0
        if return_attention:
            logits = q * self.scale @ k.transpose(-2, -1)  # (Bw, H, T, T)
            attn = (logits if bias is None else logits + bias).softmax(dim=-1)
            out = F.dropout(attn, dropout, self.training) @ v
        else:
            attn = None
            mask = None if bias is None else bias.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = out.transpose(1, 2).reshape(Bw, T, D)
        if self.window_size is not None:  # (B * nW, M*M, D) -> (B, N, D), padding cropped
            out = window_reverse(out, self.window_size, *padded)[:, : grid[0], : grid[1]].reshape(B, N, D)
        out = self.proj_drop(self.proj(out))
        return (out, attn) if return_attention else out
