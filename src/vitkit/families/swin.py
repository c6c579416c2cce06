"""The Swin Transformer family (Liu et al. 2021): windowed attention with a relative position bias."""

from __future__ import annotations

from vitkit.config.swin import SwinConfig
from vitkit.families.base import RECONSTRUCTION_NEEDS_MAE, Family, Reader
from vitkit.models.swin import SwinTransformer
from vitkit.weights.swin import (
    HF_MODEL_TYPE,
    adapt_swin,
    convert_hf_swin,
    convert_timm_swin,
    is_original_layout,
    is_swin_layout,
    to_hf_swin,
)


def _timm(ckpt, base, hints):
    return convert_timm_swin(ckpt.tensors, base, str(ckpt.path))


FAMILY = Family(
    name="swin",
    config_class=SwinConfig,
    model_class=SwinTransformer,
    block_pattern=r"layers\.\d+\.blocks\.\d+",
    adapt=adapt_swin,
    init_from=adapt_swin,  # as a backbone: the head dropped, bias tables resampled to the window
    readers=(
        Reader(
            "timm",
            "state_dict",
            _timm,
            claims=lambda ckpt: is_swin_layout(ckpt.tensors) and not is_original_layout(ckpt.tensors),
            describes="a timm Swin state dict ('layers.0.blocks.0.attn.relative_position_bias_table')",
        ),
        Reader(
            "swin_original",  # microsoft/Swin-Transformer's release (and timm < 0.9)
            "state_dict",
            _timm,
            claims=lambda ckpt: is_swin_layout(ckpt.tensors) and is_original_layout(ckpt.tensors),
            describes="an original Swin release .pth",
        ),
        Reader(
            "hf_swin",
            "hf",
            lambda ckpt, base, hints: convert_hf_swin(
                ckpt.tensors, ckpt.meta["config"], ckpt.meta.get("preprocessor"), str(ckpt.path)
            ),
            claims=lambda ckpt: ckpt.meta["config"].get("model_type") == HF_MODEL_TYPE,
            describes=f"a transformers folder of model_type {HF_MODEL_TYPE}",
        ),
    ),
    writers={"hf": to_hf_swin, "timm": lambda state, cfg: dict(state)},  # vitkit's Swin names are timm's
    viewer="windows",
    views=lambda cfg: ("heads", "distance", "filters"),
    refusals={
        "rollout": "attention rollout follows the class token through global attention; Swin has no class token "
        "and attends inside local windows: draw --kind heads (window attention around --point) or --kind distance",
        "posembed": "Swin has no absolute position embeddings (each block has a relative position bias instead): "
        "draw --kind heads, distance or filters",
        "reconstruction": RECONSTRUCTION_NEEDS_MAE,
    },
)
