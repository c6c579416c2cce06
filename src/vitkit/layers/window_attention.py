"""Window attention with a relative position bias (Swin, Liu et al. 2021, Sec. 3.2).

Self-attention runs inside non-overlapping MxM windows; every head adds a learned bias B[dh, dw] that depends
only on the offset between query and key, looked up from a (2M-1)^2 x heads table through a fixed index
(Eq. 4: softmax(QK^T / sqrt(d) + B) V); index and resampling are shared with the ViT's bias (relative_position.py).
Shifted windows (Sec. 3.2, "cyclic shift") roll the map by M/2 and mask out pairs that the roll brought together
from opposite edges.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.layers.relative_position import gather_bias, relative_position_index, relative_table_size

MASKED = -100.0  # the value the original code adds to masked pairs (exp(-100) is 0 in float32)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, M*M, C), windows in row-major order over the map, tokens row-major inside."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, C)


def window_reverse(windows: torch.Tensor, window: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, M*M, C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(-1, H // window, W // window, window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def shifted_window_mask(H: int, W: int, window: int, shift: int, device=None) -> torch.Tensor | None:
    """(nW, M*M, M*M) additive mask for attention on a map rolled by ``-shift``: 0 where two tokens come from
    the same region of the unrolled map, ``MASKED`` where the roll made them neighbours. None without a shift."""
    if shift == 0:
        return None

    def regions(n: int) -> torch.Tensor:  # 0: untouched, 1: last window before the wrap, 2: wrapped-around part
        idx = torch.arange(n, device=device)
        return (idx >= n - window).long() + (idx >= n - shift).long()

    label = (regions(H)[:, None] * 3 + regions(W)[None, :]).float()  # (H, W)
    windows = window_partition(label[None, :, :, None], window).squeeze(-1)  # (nW, M*M)
    differs = windows[:, None, :] != windows[:, :, None]
    return torch.zeros_like(differs, dtype=torch.float32).masked_fill(differs, MASKED)


class WindowAttention(nn.Module):
    """Multi-head attention inside each window with a relative position bias; optional shifted-window mask."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window = window
        self.attn_drop = attn_drop
        self.relative_position_bias_table = nn.Parameter(torch.zeros(relative_table_size(window), num_heads))
        # Fixed by the window size, so not saved (timm's and transformers' current layouts drop it too).
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def position_bias(self) -> torch.Tensor:
        """(heads, M*M, M*M) bias B of Eq. 4."""
        return gather_bias(self.relative_position_bias_table, self.relative_position_index)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_attention: bool = False):
        """(B * nW, N, D) windows -> (B * nW, N, D); ``mask`` is (nW, N, N) or None. With ``return_attention``
        also the probabilities (B * nW, H, N, N)."""
        Bw, N, D = x.shape
        # (Bw, N, 3D) -> 3 x (Bw, H, N, D/H)
        q, k, v = self.qkv(x).reshape(Bw, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.position_bias().unsqueeze(0)  # (1, H, N, N)
        if mask is not None:
            # Windows of one image share the mask: fold (nW, H) into one axis and broadcast over the batch, which
            # keeps attention 4D (ONNX's attention export takes only 4D inputs).
            nW = mask.shape[0]
            q, k, v = (t.reshape(-1, nW * self.num_heads, N, self.head_dim) for t in (q, k, v))
            bias = (bias + mask[:, None]).reshape(1, nW * self.num_heads, N, N)  # (1, nW * H, N, N)
        dropout = self.attn_drop if self.training else 0.0
        if return_attention:
            attn = (q * self.head_dim**-0.5 @ k.transpose(-2, -1) + bias).softmax(dim=-1)
            out = F.dropout(attn, dropout, self.training) @ v
            attn = attn.reshape(Bw, self.num_heads, N, N)
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout)
        out = out.reshape(Bw, self.num_heads, N, self.head_dim).transpose(1, 2).reshape(Bw, N, D)
        out = self.proj_drop(self.proj(out))
        return (out, attn) if return_attention else out
