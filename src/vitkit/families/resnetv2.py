"""The ResNetV2 family: BiT classifiers (Kolesnikov et al. 2020) and the small ResNets for 32 px images."""

from __future__ import annotations

from vitkit.config.resnet import ResNetV2Config
from vitkit.families.base import Family, Reader
from vitkit.models.resnetv2 import ResNetV2
from vitkit.weights.bit import adapt_resnetv2, convert_bit, convert_timm_resnetv2, is_bit_npz, is_resnetv2_state

FAMILY = Family(
    name="resnetv2",
    config_class=ResNetV2Config,
    model_class=ResNetV2,
    adapt=adapt_resnetv2,
    readers=(
        Reader(
            "timm",
            "state_dict",
            lambda ckpt, base, hints: convert_timm_resnetv2(ckpt.tensors, base, str(ckpt.path)),
            claims=lambda ckpt: is_resnetv2_state(ckpt.tensors),
            describes="a timm resnetv2_*_bit state dict ('stem.conv.weight', 'stages.0.blocks.0.…')",
        ),
        Reader(
            "bit",
            "npz",
            lambda ckpt, base, hints: convert_bit(ckpt.tensors, base, str(ckpt.path)),
            claims=lambda ckpt: is_bit_npz(ckpt.tensors),
            describes="an original BiT .npz ('resnet/root_block/…')",
        ),
    ),
    writers={"timm": lambda state, cfg: dict(state)},  # vitkit's ResNetV2 names are timm's
    views=lambda cfg: (),
    refusals={"*": "ResNetV2 has no attention to draw; visualisations apply to ViT, Swin and MAE models"},
)
