"""The masked-autoencoder family (He et al. 2022): a ViT encoder on visible patches and a light pixel decoder.

Its checkpoints become ViTs where a ViT is wanted (fine-tuning, evaluation, adapters): the encoder with the fixed
sin-cos table as a learned one and, by default, average pooling with the final norm after it (``derived``).
"""

from __future__ import annotations

from vitkit.config.mae import MAEConfig
from vitkit.families.base import Family, Reader
from vitkit.models.mae import MaskedAutoencoder
from vitkit.weights.mae import HF_MODEL_TYPE, convert_hf_mae, convert_official, is_mae_layout, take_encoder

FAMILY = Family(
    name="mae",
    config_class=MAEConfig,
    model_class=MaskedAutoencoder,
    task="masked_image_modeling",
    block_pattern=r"encoder\.blocks\.\d+",  # the encoder only; the decoder serves pre-training
    readers=(
        Reader(
            "mae",
            "state_dict",
            lambda ckpt, base, hints: convert_official(ckpt.tensors, base, str(ckpt.path)),
            claims=lambda ckpt: is_mae_layout(ckpt.tensors),
            priority=10,  # an MAE state dict also has a timm ViT's encoder keys
            describes="a facebookresearch/mae pre-training state dict",
        ),
        Reader(
            "hf_mae",
            "hf",
            lambda ckpt, base, hints: convert_hf_mae(
                ckpt.tensors, ckpt.meta["config"], ckpt.meta.get("preprocessor"), str(ckpt.path)
            ),
            claims=lambda ckpt: ckpt.meta["config"].get("model_type") == HF_MODEL_TYPE,
            describes=f"a transformers folder of model_type {HF_MODEL_TYPE}",
        ),
    ),
    viewer="reconstruction",
    views=lambda cfg: ("reconstruction",),
    refusals={
        "*": "an MAE checkpoint draws only --kind reconstruction, not {kind}; for the encoder's attention, export it "
        "first: vitkit convert CKPT encoder.safetensors --num-classes 0",
    },
    derived={"vit": take_encoder},
)
