"""Multi-head self-attention with a fused qkv projection (paper Appendix A).

The default path calls ``scaled_dot_product_attention`` so PyTorch picks the fastest kernel (flash or
memory-efficient attention). When the probabilities are wanted (visualisation), the same weights are used
in an explicit softmax(QK^T / sqrt(d)) so the fused path pays nothing for the option.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """(B, N, D) -> (B, N, D); with ``return_attention`` also the probabilities (B, H, N, N)."""
        B, N, D = x.shape
        # (B, N, 3D) -> (3, B, H, N, D/H)
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.attn_drop if self.training else 0.0
        if return_attention:
            attn = (q * self.scale @ k.transpose(-2, -1)).softmax(dim=-1)
            out = F.dropout(attn, dropout, self.training) @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, D)))
        return (out, attn) if return_attention else out
