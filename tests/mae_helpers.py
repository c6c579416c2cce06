"""Builders for the MAE tests: a tiny transformers ViTMAE with random weights, and the official layout of it."""

from __future__ import annotations

import re

import numpy as np
import torch

from vitkit.config.mae import MAEConfig

# 16x16 images, 4x4 patches: a 4x4 grid of 16 patches; encoder width 32, decoder width 16.
TINY_MAE = dict(
    img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_dim=64,
    decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=2, decoder_mlp_dim=32,
)  # fmt: skip


def tiny_mae_config(**changes) -> MAEConfig:
    return MAEConfig(**{**TINY_MAE, **changes})


def official_table(dim: int, gh: int, gw: int) -> torch.Tensor:
    """models_mae's util/pos_embed.get_2d_sincos_pos_embed in float64 NumPy: (1, 1 + gh*gw, dim), zero class row.

    Its meshgrid(w, h) makes the first half encode the column and the second the row."""

    def one(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    w, h = np.meshgrid(np.arange(gw, dtype=np.float64), np.arange(gh, dtype=np.float64))
    emb = np.concatenate([one(dim // 2, w), one(dim // 2, h)], axis=1)
    return torch.from_numpy(np.concatenate([np.zeros((1, dim)), emb])).float()[None]


def hf_mae(norm_pix_loss: bool = True, seed: int = 0):
    """transformers' ViTMAEForPreTraining with random weights (LayerNorms and tokens too) and the released
    checkpoints' sin-cos tables (a freshly built transformers 5 model leaves them at zero)."""
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    cfg = ViTMAEConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16,
        patch_size=4, decoder_hidden_size=16, decoder_num_hidden_layers=2, decoder_num_attention_heads=2,
        decoder_intermediate_size=32, norm_pix_loss=norm_pix_loss,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = ViTMAEForPreTraining(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(0, 0.1).add_(1.0 if "layernorm" in name and name.endswith("weight") else 0.0)
        model.vit.embeddings.position_embeddings.copy_(official_table(32, 4, 4))
        model.decoder.decoder_pos_embed.copy_(official_table(16, 4, 4))
    return model


_OFFICIAL = [  # transformers (in memory) -> models_mae names
    (r"^vit\.embeddings\.cls_token$", "cls_token"),
    (r"^vit\.embeddings\.position_embeddings$", "pos_embed"),
    (r"^vit\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^vit\.layernorm\.", "norm."),
    (r"^vit\.layers\.(\d+)\.", r"blocks.\1."),
    (r"^decoder\.decoder_layers\.(\d+)\.", r"decoder_blocks.\1."),
    (r"^decoder\.", ""),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.attention\.o_proj\.", ".attn.proj."),
]


def official_state(hf_model) -> dict[str, torch.Tensor]:
    """The models_mae state dict of the same weights (q, k, v fused into qkv as timm's Block keeps them)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in hf_model.state_dict().items():
        for pattern, repl in _OFFICIAL:
            key = re.sub(pattern, repl, key)
        out[key] = value.clone()
    for key in [k for k in out if ".attention.q_proj." in k]:
        w = key.rsplit(".", 1)[1]
        base = key.split(".attention.")[0]
        parts = [out.pop(f"{base}.attention.{n}_proj.{w}") for n in "qkv"]
        out[f"{base}.attn.qkv.{w}"] = torch.cat(parts)
    return out
