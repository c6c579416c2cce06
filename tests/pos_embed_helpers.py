"""References for the position-embedding kinds, written from the papers without vitkit's code: Vaswani's 1D sin-cos
table entry by entry, BEiT's relative bias by a loop over token pairs, and a whole ViT forward in float64."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def reference_sincos_1d(length: int, dim: int) -> np.ndarray:
    """Vaswani et al. (2017), Sec. 3.5, entry by entry: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos."""
    out = np.zeros((length, dim))
    for pos in range(length):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            out[pos, 2 * i] = math.sin(angle)
            out[pos, 2 * i + 1] = math.cos(angle)
    return out


def reference_bias(table: np.ndarray, grid: tuple[int, int], prefix: int) -> np.ndarray:
    """(heads, T, T) by a plain loop over token pairs: patches look up their (row, column) offset in a
    (2Gh-1) x (2Gw-1) grid of rows; BEiT's three entries after it for class -> patch, patch -> class, class -> class."""
    gh, gw = grid
    n = (2 * gh - 1) * (2 * gw - 1)
    offsets = table[:n].reshape(2 * gh - 1, 2 * gw - 1, -1)  # [dh + Gh-1, dw + Gw-1]
    cls_to_patch, patch_to_cls, cls_to_cls = table[n : n + 3] if prefix else (None, None, None)
    T = prefix + gh * gw
    out = np.zeros((table.shape[1], T, T))
    for i in range(T):
        for j in range(T):
            if i < prefix and j < prefix:
                out[:, i, j] = cls_to_cls
            elif i < prefix:
                out[:, i, j] = cls_to_patch
            elif j < prefix:
                out[:, i, j] = patch_to_cls
            else:
                (ri, ci), (rj, cj) = divmod(i - prefix, gw), divmod(j - prefix, gw)
                out[:, i, j] = offsets[ri - rj + gh - 1, ci - cj + gw - 1]
    return out


def reference_attention(
    x: torch.Tensor, w: dict[str, torch.Tensor], heads: int, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(QK^T / sqrt(d) + B) V, then the output projection, in float64: (output (B, T, D), probs (B, H, T, T))."""
    B, T, D = x.shape
    qkv = (x @ w["qkv.weight"].T + w["qkv.bias"]).reshape(B, T, 3, heads, D // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, H, T, d) each
    logits = q @ k.transpose(-2, -1) / math.sqrt(D // heads)
    probs = torch.softmax(logits if bias is None else logits + bias, dim=-1)
    merged = (probs @ v).transpose(1, 2).reshape(B, T, D)
    return merged @ w["proj.weight"].T + w["proj.bias"], probs


def reference_vit(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A pre-LN ViT with a [class] token and a relative bias per block, from the state dict alone, in float64:
    (logits, [attention probabilities per block])."""
    cfg = model.cfg
    s = {k: v.detach().double() for k, v in model.state_dict().items()}
    B, P, D = images.shape[0], cfg.patch_size[0], cfg.embed_dim
    gh, gw = images.shape[-2] // P, images.shape[-1] // P
    patches = images.double().unfold(2, P, P).unfold(3, P, P)  # (B, C, gh, gw, P, P)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(B, gh * gw, -1)  # row-major patches, (C, P, P) each
    z = patches @ s["patch_embed.proj.weight"].reshape(D, -1).T + s["patch_embed.proj.bias"]
    z = torch.cat([s["cls_token"].expand(B, -1, -1), z], dim=1)
    maps = []
    for i in range(cfg.depth):
        w = {k[len(f"blocks.{i}.") :]: v for k, v in s.items() if k.startswith(f"blocks.{i}.")}
        table = w["attn.relative_position_bias_table"].numpy()
        bias = torch.from_numpy(reference_bias(table, (gh, gw), 1))
        h = F.layer_norm(z, (D,), w["norm1.weight"], w["norm1.bias"], cfg.norm_eps)
        attn = {k[len("attn.") :]: v for k, v in w.items() if k.startswith("attn.")}
        out, probs = reference_attention(h, attn, cfg.num_heads, bias)
        z = z + out
        h = F.layer_norm(z, (D,), w["norm2.weight"], w["norm2.bias"], cfg.norm_eps)
        z = z + F.gelu(h @ w["mlp.fc1.weight"].T + w["mlp.fc1.bias"]) @ w["mlp.fc2.weight"].T + w["mlp.fc2.bias"]
        maps.append(probs)
    z = F.layer_norm(z, (D,), s["norm.weight"], s["norm.bias"], cfg.norm_eps)
    return z[:, 0] @ s["head.weight"].T + s["head.bias"], maps
