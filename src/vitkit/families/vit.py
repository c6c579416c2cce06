"""The Vision Transformer family (Dosovitskiy et al. 2020; DeiT; the R50 hybrids; the conv-stem ViT)."""

from __future__ import annotations

from vitkit.config.vit import ViTConfig
from vitkit.families.base import RECONSTRUCTION_NEEDS_MAE, Family, Reader
from vitkit.models.vit import VisionTransformer
from vitkit.weights.adapt import adapt_vit
from vitkit.weights.hf import MODEL_TYPES, convert_hf, to_hf
from vitkit.weights.jax import convert_jax, find_prefix
from vitkit.weights.timm import convert_timm, is_timm_layout, to_timm


def views(cfg: ViTConfig) -> tuple[str, ...]:
    """Every picture of the paper's Sec. 4.5; no table to compare without position embeddings, and no pixel
    filters when the stem is a CNN (the hybrid)."""
    kinds = ["rollout", "heads", "distance"]
    if cfg.pos_embed != "none":
        kinds.append("posembed")
    if cfg.backbone_layers is None:
        kinds.append("filters")
    return tuple(kinds)


FAMILY = Family(
    name="vit",
    config_class=ViTConfig,
    model_class=VisionTransformer,
    block_pattern=r"blocks\.\d+",
    adapt=adapt_vit,
    init_from=adapt_vit,  # as a backbone: the head dropped, the position table resampled
    readers=(
        Reader(
            "timm",
            "state_dict",
            lambda ckpt, base, hints: convert_timm(ckpt.tensors, base, hints.get("num_heads"), str(ckpt.path)),
            claims=lambda ckpt: is_timm_layout(ckpt.tensors),
            describes="a timm ViT/DeiT state dict ('patch_embed.proj.weight', 'blocks.0.…')",
        ),
        Reader(
            "hf",
            "hf",
            lambda ckpt, base, hints: convert_hf(
                ckpt.tensors, ckpt.meta["config"], ckpt.meta.get("preprocessor"), str(ckpt.path)
            ),
            claims=lambda ckpt: ckpt.meta["config"].get("model_type") in MODEL_TYPES,
            describes=f"a transformers folder of model_type {' or '.join(MODEL_TYPES)}",
        ),
        Reader(
            "jax",
            "npz",
            lambda ckpt, base, hints: convert_jax(ckpt.tensors, base, str(ckpt.path)),
            claims=lambda ckpt: find_prefix(ckpt.tensors) is not None,
            describes="a vit_jax / big_vision .npz ('embedding/kernel')",
        ),
    ),
    writers={"hf": to_hf, "timm": to_timm},
    viewer="tokens",
    views=views,
    refusals={
        "posembed": "this model has no position embeddings (pos_embed='none'): nothing to compare",
        "filters": "the hybrid's stem is a ResNet: its first layer is not a patch projection with pixel filters",
        "reconstruction": RECONSTRUCTION_NEEDS_MAE,
    },
)
