"""Small builders shared by the tests."""

from __future__ import annotations

import math

import numpy as np

from vitkit import ViTConfig

TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, mlp_dim=128, num_classes=5)


def tiny_config(**changes) -> ViTConfig:
    """A ViT small enough for exhaustive checks: 4x4 grid, width 32, two blocks."""
    return ViTConfig(**{**TINY, **changes})


def numpy_vit_logits(state: dict, cfg: ViTConfig, images_nchw: np.ndarray) -> np.ndarray:
    """The paper's Eq. 1-4 in float64 NumPy, from a plain ViT's state dict (learned 1D positions, [class] token
    pooling, exact GELU): a reference that shares no code with vitkit's modules."""
    w = {k: v.detach().double().numpy() for k, v in state.items()}
    B, P, D, H = images_nchw.shape[0], cfg.patch_size[0], cfg.embed_dim, cfg.num_heads
    x = images_nchw.astype(np.float64)
    gh, gw = x.shape[2] // P, x.shape[3] // P
    patches = x.reshape(B, 3, gh, P, gw, P).transpose(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, 3 * P * P)
    z = patches @ w["patch_embed.proj.weight"].reshape(D, -1).T + w["patch_embed.proj.bias"]  # Eq. 1: x_p E
    z = np.concatenate([np.broadcast_to(w["cls_token"], (B, 1, D)), z], axis=1) + w["pos_embed"]

    def norm(v: np.ndarray, name: str) -> np.ndarray:
        mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + cfg.norm_eps) * w[f"{name}.weight"] + w[f"{name}.bias"]

    def linear(v: np.ndarray, name: str) -> np.ndarray:
        return v @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    erf = np.vectorize(math.erf)
    for i in range(cfg.depth):
        b = f"blocks.{i}"
        q, k, v = linear(norm(z, f"{b}.norm1"), f"{b}.attn.qkv").reshape(B, -1, 3, H, D // H).transpose(2, 0, 3, 1, 4)
        logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D // H)
        attn = np.exp(logits - logits.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        z = z + linear((attn @ v).transpose(0, 2, 1, 3).reshape(B, -1, D), f"{b}.attn.proj")  # Eq. 2
        h = linear(norm(z, f"{b}.norm2"), f"{b}.mlp.fc1")
        z = z + linear(0.5 * h * (1 + erf(h / math.sqrt(2))), f"{b}.mlp.fc2")  # Eq. 3
    return linear(norm(z, "norm")[:, 0], "head")  # Eq. 4 and the head
