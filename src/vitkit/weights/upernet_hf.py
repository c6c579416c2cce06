"""transformers' UperNet heads <-> vitkit's, whose names are mmsegmentation's: one rule table, read both ways.

    vitkit / mmseg (ViT-Adapter, Swin, BEiT releases)   transformers (UperNetForSemanticSegmentation)
    decode_head.{m}.conv.weight                         decode_head.{m}.conv.weight
    decode_head.{m}.bn.{w}                              decode_head.{m}.batch_norm.{w}
    decode_head.conv_seg.{weight,bias}                  decode_head.classifier.{weight,bias}
    auxiliary_head.{m}.bn.{w}                           auxiliary_head.{m}.batch_norm.{w}
    auxiliary_head.conv_seg.{weight,bias}               auxiliary_head.classifier.{weight,bias}

for every ConvModule m (``psp_modules.{i}.1``, ``bottleneck``, ``lateral_convs.{i}``, ``fpn_convs.{i}``,
``fpn_bottleneck``; ``convs.{i}``, ``conv_cat``) and every BatchNorm tensor w (``weight``, ``bias``,
``running_mean``, ``running_var``, and ``num_batches_tracked`` where the file has it). Module paths are the same
on both sides, so the layout (levels, pooling branches, auxiliary convolutions) is read from either naming.
Pooling sizes, align_corners and the like hold no tensors: they travel in the configs, not here.

Keys outside the two heads (the backbone's) are returned untouched, for the backbone's own converter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from vitkit.config.segmentor import SegmentorConfig
from vitkit.weights.errors import CheckpointError
from vitkit.weights.rules import Rule, apply_rules, invert_rules, rule
from vitkit.weights.swin import BUFFERS, HF_DEFAULTS, hf_swin_rules, swin_config_from_hf

HEADS = ("decode_head.", "auxiliary_head.")
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class HeadLayout:
    """What fixes the heads' key set."""

    levels: int  # maps the decode head reads (lateral convs + 1)
    pool_scales: int  # pyramid pooling branches
    aux_convs: int | None  # the auxiliary head's ConvModules; None when there is no auxiliary head
    aux_concat: bool = False  # the auxiliary head has conv_cat


def _count(keys: Iterable[str], prefix: str) -> int:
    """1 + the largest i among keys that start with ``prefix{i}.`` (0 when none do)."""
    found = [int(m.group(1)) for k in keys if (m := re.match(rf"{re.escape(prefix)}(\d+)\.", k))]
    return max(found, default=-1) + 1


def head_layout(keys: Iterable[str]) -> HeadLayout:
    """The heads' layout from a state dict's keys, in vitkit's or transformers' naming."""
    keys = list(keys)
    if not any(k.startswith("decode_head.") for k in keys):
        raise CheckpointError("no 'decode_head.*' keys: not a UperNet segmentor's state dict")
    has_aux = any(k.startswith("auxiliary_head.") for k in keys)
    return HeadLayout(
        levels=_count(keys, "decode_head.lateral_convs.") + 1,
        pool_scales=_count(keys, "decode_head.psp_modules."),
        aux_convs=_count(keys, "auxiliary_head.convs.") if has_aux else None,
        aux_concat=any(k.startswith("auxiliary_head.conv_cat.") for k in keys),
    )


def _conv_module(mine: str, theirs: str) -> list[Rule]:
    rules = [rule(f"{mine}.conv.weight", f"{theirs}.conv.weight")]
    rules += [rule(f"{mine}.bn.{w}", f"{theirs}.batch_norm.{w}") for w in BN_TENSORS]
    return rules + [rule(f"{mine}.bn.num_batches_tracked", f"{theirs}.batch_norm.num_batches_tracked", optional=True)]


def upernet_hf_rules(layout: HeadLayout) -> list[Rule]:
    """The table between vitkit (mmseg) head keys and transformers' for heads of ``layout``."""
    modules = [f"decode_head.psp_modules.{i}.1" for i in range(layout.pool_scales)]
    modules += ["decode_head.bottleneck", "decode_head.fpn_bottleneck"]
    for i in range(layout.levels - 1):
        modules += [f"decode_head.lateral_convs.{i}", f"decode_head.fpn_convs.{i}"]
    classifiers = ["decode_head"]
    if layout.aux_convs is not None:
        modules += [f"auxiliary_head.convs.{i}" for i in range(layout.aux_convs)]
        modules += ["auxiliary_head.conv_cat"] if layout.aux_concat else []
        classifiers.append("auxiliary_head")
    rules = [r for m in modules for r in _conv_module(m, m)]
    return rules + [rule(f"{h}.conv_seg.{w}", f"{h}.classifier.{w}") for h in classifiers for w in ("weight", "bias")]


def _split(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    heads = {k: v for k, v in state.items() if k.startswith(HEADS)}
    return heads, {k: v for k, v in state.items() if k not in heads}


def convert_hf_upernet_heads(
    state: Mapping[str, Any], source: str = "transformers UperNet checkpoint"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """transformers tensors -> (vitkit's ``decode_head.*`` / ``auxiliary_head.*`` tensors, the other tensors as they
    came). Pure: builds no model; a head tensor that no rule uses is an error, never dropped."""
    heads, rest = _split(state)
    out, unused = apply_rules(upernet_hf_rules(head_layout(heads)), heads, source)
    if unused:
        raise CheckpointError(f"{source}: head tensors with no place in vitkit's UperNet heads: {unused[:8]}")
    return out, rest


def to_hf_upernet_heads(
    state: Mapping[str, Any], target: str = "a transformers UperNet"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """vitkit tensors -> (transformers' ``decode_head.*`` / ``auxiliary_head.*`` tensors, the other tensors as they
    came), for ``UperNetForSemanticSegmentation.load_state_dict``."""
    heads, rest = _split(state)
    out, unused = invert_rules(upernet_hf_rules(head_layout(heads)), heads, target)
    if unused:
        raise CheckpointError(f"cannot write {target}: no place for head tensors {unused[:8]}")
    return out, rest


# ------------------------------------------------------------------------------------------- whole model
HF_MODEL_TYPE = "upernet"
STAGE_NORM = re.compile(r"^backbone\.hidden_states_norms\.stage(\d+)\.(weight|bias)$")
BACKBONE_TYPES = ("swin",)  # backbones whose transformers layout vitkit reads


def convert_hf_upernet(
    state: Mapping[str, torch.Tensor],
    config: dict[str, Any],
    preprocessor: dict[str, Any] | None = None,
    source: str = "transformers UperNet folder",
) -> tuple[dict[str, torch.Tensor], SegmentorConfig]:
    """``UperNetForSemanticSegmentation`` tensors + config.json -> (vitkit segmentor state dict, config). Pure.

    The Swin backbone's tensors go through the Swin table (``backbone.`` prefix, no final norm: the backbone ends in
    one LayerNorm per stage, ``hidden_states_norms``, which become the segmentor's ``neck``); the heads through
    :func:`convert_hf_upernet_heads`. Settings without tensors (widths, pooling, the auxiliary head's form and
    weight, the ignored label) come from the config."""
    backbone = config.get("backbone_config") or {}
    kind = backbone.get("model_type")
    if kind not in BACKBONE_TYPES:
        raise CheckpointError(f"{source}: a {kind!r} backbone; vitkit reads transformers UperNet on {BACKBONE_TYPES}")
    stages = backbone.get("out_features") or [f"stage{i}" for i in range(1, 5)]
    if list(stages) != [f"stage{i}" for i in range(1, 5)]:
        raise CheckpointError(f"{source}: out_features {stages}; vitkit's segmentor takes stage1-stage4")
    heads, rest = convert_hf_upernet_heads(state, source)
    # transformers >= 5 keeps SwinModel's final LayerNorm inside the backbone (as backbone.swin.layernorm), where
    # UperNet never uses it: the stages end in hidden_states_norms instead. It is the one key left behind.
    rest = {k.replace("backbone.swin.", "backbone.", 1): v for k, v in rest.items()}
    rest = {k: v for k, v in rest.items() if not k.startswith("backbone.layernorm.")}
    norms = {f"neck.{int(m.group(1)) - 1}.{m.group(2)}": v for k, v in rest.items() if (m := STAGE_NORM.match(k))}
    rest = {k: v for k, v in rest.items() if not STAGE_NORM.match(k) and not k.endswith(BUFFERS)}
    depths = tuple(int(d) for d in backbone.get("depths", HF_DEFAULTS["depths"]))
    new_layout = any(".attention.q_proj." in k for k in rest)
    rules = [r for r in hf_swin_rules("backbone.", depths, new_layout) if not r.dst.startswith(("norm.", "head."))]
    swin, unused = apply_rules(rules, rest, source)
    if unused:
        raise CheckpointError(f"{source}: backbone tensors with no place in vitkit's Swin: {unused[:8]}")
    layout = head_layout(state)
    c = config
    classes = [c["id2label"][str(i)] for i in range(len(c["id2label"]))] if c.get("id2label") else []
    num_classes = int(heads["decode_head.conv_seg.weight"].shape[0])
    # transformers' SwinBackbone partitions every stage (always_partition=True): shifted windows stay on.
    swin_cfg = swin_config_from_hf(backbone, preprocessor, 0, None, source).replace(dynamic_img_size=True,
                                                                                   always_shift=True)  # fmt: skip
    cfg = SegmentorConfig(
        backbone=swin_cfg, neck="norms", head="upernet", channels=int(c.get("hidden_size", 512)),
        pool_scales=tuple(c.get("pool_scales", (1, 2, 3, 6))), dropout=0.1, aux_head=layout.aux_convs is not None,
        aux_channels=int(c.get("auxiliary_channels", 256)), aux_num_convs=int(c.get("auxiliary_num_convs", 1)),
        aux_concat_input=bool(c.get("auxiliary_concat_input", False)),
        aux_weight=float(c.get("auxiliary_loss_weight", 0.4)), num_classes=num_classes,
        ignore_index=int(c.get("loss_ignore_index", 255)),
        extra={"classes": classes} if len(classes) == num_classes and not classes[0].startswith("LABEL_") else {},
    )  # fmt: skip
    return {**{f"backbone.{k}": v for k, v in swin.items()}, **norms, **heads}, cfg
