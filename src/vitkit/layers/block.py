"""One Transformer encoder layer (paper Eq. 2-3), pre-LN by default, post-LN on request."""

from __future__ import annotations

import torch
from torch import nn

from vitkit.layers.attention import Attention
from vitkit.layers.drop import DropPath
from vitkit.layers.mlp import Mlp


class Block(nn.Module):
    """Pre-LN: x + MSA(LN(x)), then x + MLP(LN(x)). Post-LN (original Transformer): LN(x + MSA(x)), ..."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        qkv_bias: bool = True,
        pre_norm: bool = True,
        norm_eps: float = 1e-6,
        act_layer: str = "gelu",
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_dim, act_layer=act_layer, drop=proj_drop)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """(B, N, D) -> (B, N, D); with ``return_attention`` also this layer's (B, H, N, N) probabilities."""
        attn = None
        if self.pre_norm:
            y = self.attn(self.norm1(x), return_attention=return_attention)
            if return_attention:
                y, attn = y
            x = x + self.drop_path1(y)
            x = x + self.drop_path2(self.mlp(self.norm2(x)))
        else:
            y = self.attn(x, return_attention=return_attention)
            if return_attention:
                y, attn = y
            x = self.norm1(x + self.drop_path1(y))
            x = self.norm2(x + self.drop_path2(self.mlp(x)))
        return (x, attn) if return_attention else x
