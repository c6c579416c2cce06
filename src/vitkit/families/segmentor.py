"""The segmentor family: a backbone of any family with a pyramid neck, a decode head and an auxiliary head
(mmseg's ``EncoderDecoder``). Its task is semantic segmentation; it reads ViT-Adapter's mmseg release files and
transformers' UperNet folders, and starts its backbone from a classifier's weights as the backbone's family says."""

from __future__ import annotations

from typing import Any

from vitkit.config.segmentor import SegmentorConfig
from vitkit.families import build_model, config_from_dict, family_of
from vitkit.families.base import Family, Reader, State
from vitkit.models.segmentor import Segmentor
from vitkit.weights.errors import CheckpointError
from vitkit.weights.mmseg import backbone_type, convert_mmseg
from vitkit.weights.upernet_hf import HF_MODEL_TYPE, convert_hf_upernet

HEADS = ("decode_head.conv_seg.", "auxiliary_head.conv_seg.")
BACKBONE = "backbone."


def _build(cfg: SegmentorConfig) -> Segmentor:
    return Segmentor(cfg, build_model(cfg.backbone))


def _read_config(data: dict[str, Any]) -> SegmentorConfig:
    data = dict(data)
    stored = data.pop("backbone")
    return SegmentorConfig(backbone=config_from_dict(stored["config"], stored["family"]), **data)


def _adapt(state: State, src: SegmentorConfig, dst: SegmentorConfig) -> State:
    """The backbone's part reshaped by its family (position or bias tables); classifiers dropped for a new class
    count (they start fresh, as mmseg's ``conv_seg``)."""
    if src.backbone.family != dst.backbone.family:
        raise CheckpointError(
            f"a segmentor on a {src.backbone.family!r} backbone cannot load into one on {dst.backbone.family!r}"
        )
    inner = {k[len(BACKBONE) :]: v for k, v in state.items() if k.startswith(BACKBONE)}
    out = {k: v for k, v in state.items() if not k.startswith(BACKBONE)}
    out.update({BACKBONE + k: v for k, v in family_of(src.backbone).adapt(inner, src.backbone, dst.backbone).items()})
    if src.num_classes != dst.num_classes:
        out = {k: v for k, v in out.items() if not k.startswith(HEADS)}
    return out


def _init_backbone(state: State, src: Any, dst: SegmentorConfig) -> State:
    family = family_of(dst.backbone)
    if family.init_from is None:
        raise CheckpointError(f"a {family.name!r} backbone cannot start from another model's weights")
    return {BACKBONE + k: v for k, v in family.init_from(state, src, dst.backbone).items()}


FAMILY = Family(
    name="segmentor",
    config_class=SegmentorConfig,
    model_class=Segmentor,
    task="segmentation",
    adapt=_adapt,
    init_from=_init_backbone,
    head_prefixes=HEADS,
    builder=_build,
    config_reader=_read_config,
    readers=(
        Reader(
            "mmseg",
            "mmcv",
            lambda ckpt, base, hints: convert_mmseg(ckpt.tensors, ckpt.meta, base, str(ckpt.path)),
            claims=lambda ckpt: (
                backbone_type(ckpt.meta.get("config") or "") == "ViTAdapter"
                or (ckpt.meta.get("config") is None and any(k.startswith("decode_head.") for k in ckpt.tensors))
            ),
            describes="a ViT-Adapter mmseg release .pth ({'meta': {'config': ...}, 'state_dict': ...})",
        ),
        Reader(
            "hf_upernet",
            "hf",
            lambda ckpt, base, hints: convert_hf_upernet(
                ckpt.tensors, ckpt.meta["config"], ckpt.meta.get("preprocessor"), str(ckpt.path)
            ),
            claims=lambda ckpt: ckpt.meta["config"].get("model_type") == HF_MODEL_TYPE,
            describes=f"a transformers folder of model_type {HF_MODEL_TYPE}",
        ),
    ),
    refusals={"*": "segmentation checkpoints draw predictions with `vitkit predict IMG --checkpoint CKPT --out DIR`"},
)
