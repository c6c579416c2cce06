"""One Transformer encoder layer (paper Eq. 2-3), pre-LN by default, post-LN on request; optional layer scale
and windowed attention, as the plain-ViT detection backbones use them (ViTDet, ViT-Adapter)."""

from __future__ import annotations

import torch
from torch import nn

from vitkit.layers.attention import Attention
from vitkit.layers.drop import DropPath
from vitkit.layers.mlp import Mlp


class LayerScale(nn.Module):
    """A learned per-channel scale of a residual branch (CaiT, Touvron et al. 2021); timm's name ``gamma``."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-LN: x + MSA(LN(x)), then x + MLP(LN(x)). Post-LN (original Transformer): LN(x + MSA(x)), ...

    ``layer_scale`` (an initial value) scales each branch per channel (``ls1.gamma``, ``ls2.gamma``); without it
    the state dict is the plain block's. ``window_size`` restricts attention to windows of the token grid, which
    ``forward`` then needs as ``grid``. ``relative_grid`` gives attention a learned relative position bias over
    that grid and ``num_prefix_tokens`` tokens before it (BEiT); ``forward``'s ``grid`` then resamples it.
    """

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
        layer_scale: float | None = None,
        window_size: int | None = None,
        relative_grid: tuple[int, int] | None = None,
        num_prefix_tokens: int = 0,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            window_size=window_size,
            relative_grid=relative_grid,
            num_prefix_tokens=num_prefix_tokens,
        )
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_dim, act_layer=act_layer, drop=proj_drop)
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor, return_attention: bool = False, grid: tuple[int, int] | None = None):
        """(B, N, D) -> (B, N, D); with ``return_attention`` also this layer's (B, H, N, N) probabilities.
        ``grid`` (rows, cols) of the N tokens is needed by windowed attention and by a relative bias at a new grid."""
        attn = None
        if self.pre_norm:
            y = self.attn(self.norm1(x), return_attention=return_attention, grid=grid)
            if return_attention:
                y, attn = y
            x = x + self.drop_path1(self.ls1(y))
            x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        else:
            y = self.attn(x, return_attention=return_attention, grid=grid)
            if return_attention:
                y, attn = y
            x = self.norm1(x + self.drop_path1(self.ls1(y)))
            x = self.norm2(x + self.drop_path2(self.ls2(self.mlp(x))))
        return (x, attn) if return_attention else x
