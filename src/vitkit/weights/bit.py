"""ResNetV2 checkpoints: original BiT ``.npz`` files (google-research/big_transfer) and timm ``resnetv2_*_bit``
state dicts -> vitkit, plus the family's shape adaptation on load (a new head; a CNN needs nothing for a new size).

BiT key layout (prefix ``resnet/``; kernels HWIO)::

    root_block/standardized_conv2d/kernel              (7, 7, C, 64k)           -> stem.conv.weight
    block{s}/unit{uu}/a/group_norm/{gamma,beta}        pre-activation of conv a -> stages.{s-1}.blocks.{u-1}.norm1
    block{s}/unit{uu}/{a,b,c}/standardized_conv2d/kernel                        -> ...conv{1,2,3}.weight
    block{s}/unit{uu}/{b,c}/group_norm/{gamma,beta}                             -> ...norm{2,3}
    block{s}/unit{uu}/a/proj/standardized_conv2d/kernel  the projection shortcut -> ...downsample.conv.weight
    group_norm/{gamma,beta}                            final pre-activation     -> norm
    head/conv2d/{kernel,bias}                          (1, 1, F, K)             -> head.fc

Units are numbered from 01 (``unit01``). Numerics travel in the config: the original code standardises weights as
``(w - mean) / sqrt(var + 1e-10)`` (timm's port: 1e-8), GroupNorm eps 1e-5, inputs in [-1, 1].
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from vitkit.config.resnet import ResNetV2Config
from vitkit.weights.adapt import drop_head
from vitkit.weights.errors import CheckpointError
from vitkit.weights.rules import Rule, apply_rules, rule, unsupported

BIT_PREFIX = "resnet/"
BIT_ROOT = f"{BIT_PREFIX}root_block/standardized_conv2d/kernel"
BIT_WS_EPS = 1e-10  # big_transfer's StdConv2d: torch.sqrt(v + 1e-10)
UNSUPPORTED = {"running_mean": "BatchNorm (timm's resnetv2_50 / 50d / 101 are BN ResNets, not BiT)"}


def _conv(k: np.ndarray) -> np.ndarray:
    return k.transpose(3, 2, 0, 1)  # HWIO -> OIHW


def _vector(v: np.ndarray) -> np.ndarray:
    return v.reshape(-1)


def is_bit_npz(keys: Any) -> bool:
    return BIT_ROOT in set(keys)


def is_resnetv2_state(keys: Any) -> bool:
    keys = set(keys)
    return "stem.conv.weight" in keys and any(k.startswith("stages.0.blocks.0.") for k in keys)


def _count(keys: Any, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in keys if (m := re.match(pattern, k))})


# ------------------------------------------------------------------------------------------ BiT .npz
def _gn_rules(dst: str, src: str) -> list[Rule]:
    return [rule(f"{dst}.weight", f"{src}/gamma", fn=_vector), rule(f"{dst}.bias", f"{src}/beta", fn=_vector)]


def bit_rules(layers: tuple[int, ...], head: bool, letters: str = "abc") -> list[Rule]:
    """The table above; ``letters="ab"`` for basic units (vitkit's small ResNets written in BiT's layout)."""
    p, conv = BIT_PREFIX, "standardized_conv2d/kernel"
    rules = [rule("stem.conv.weight", BIT_ROOT, fn=_conv), *_gn_rules("norm", f"{p}group_norm")]
    if head:
        rules.append(rule("head.fc.weight", f"{p}head/conv2d/kernel", fn=_conv))
        rules.append(rule("head.fc.bias", f"{p}head/conv2d/bias"))
    for s, units in enumerate(layers):
        for u in range(units):
            src, dst = f"{p}block{s + 1}/unit{u + 1:02d}/", f"stages.{s}.blocks.{u}."
            for r, letter in enumerate(letters, start=1):
                rules.append(rule(f"{dst}conv{r}.weight", f"{src}{letter}/{conv}", fn=_conv))
                rules += _gn_rules(f"{dst}norm{r}", f"{src}{letter}/group_norm")
            rules.append(rule(f"{dst}downsample.conv.weight", f"{src}a/proj/{conv}", fn=_conv, optional=True))
    return rules


def convert_bit(
    arrays: dict[str, np.ndarray], base: ResNetV2Config | None = None, source: str = "BiT checkpoint"
) -> tuple[dict[str, torch.Tensor], ResNetV2Config]:
    """BiT arrays -> (vitkit state dict, config read from the arrays). Pure: builds no model.

    ``base`` (a registry config) supplies only the image size and preprocessing.
    """
    if BIT_ROOT not in arrays:
        raise CheckpointError(f"{source}: no '{BIT_ROOT}'; not an original BiT (big_transfer) checkpoint")
    stages = _count(arrays, rf"{re.escape(BIT_PREFIX)}block(\d+)/")
    if stages != list(range(1, len(stages) + 1)):
        raise CheckpointError(f"{source}: ResNet blocks must be numbered block1, block2, ...; found {stages}")
    layers = tuple(len(_count(arrays, rf"{re.escape(BIT_PREFIX)}block{s}/unit(\d+)/")) for s in stages)
    head = f"{BIT_PREFIX}head/conv2d/kernel" in arrays
    basic = f"{BIT_PREFIX}block1/unit01/c/standardized_conv2d/kernel" not in arrays
    state, leftover = apply_rules(bit_rules(layers, head, "ab" if basic else "abc"), arrays, source)
    if leftover:
        raise unsupported(leftover, source, UNSUPPORTED)
    root = arrays[BIT_ROOT]  # (7, 7, C, 64k); (3, 3, C, w) for a 32 px net
    fields: dict[str, Any] = dict(
        layers=layers,
        width=int(root.shape[-1]),
        in_chans=int(root.shape[2]),
        num_classes=int(arrays[f"{BIT_PREFIX}head/conv2d/kernel"].shape[-1]) if head else 0,
        block="preact_basic" if basic else "preact_bottleneck",
        stem="cifar" if root.shape[0] == 3 else "fixed",
        padding="symmetric",
        ws_style="var",
        ws_eps=BIT_WS_EPS,
        gn_eps=1e-5,
    )
    cfg = base.replace(**fields) if base is not None else ResNetV2Config(**fields, img_size=224)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, cfg


# ------------------------------------------------------------------------------------------ timm
def convert_timm_resnetv2(
    state: dict[str, torch.Tensor], base: ResNetV2Config | None = None, source: str = "timm state dict"
) -> tuple[dict[str, torch.Tensor], ResNetV2Config]:
    """timm ``resnetv2_*_bit`` tensors (vitkit's names already) -> (state dict, config read from the shapes)."""
    batchnorm = sorted(k for k in state if k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    if batchnorm:
        raise unsupported(batchnorm, source, UNSUPPORTED)
    stem = state["stem.conv.weight"]  # (width, C, k, k)
    stages = _count(state, r"stages\.(\d+)\.")
    layers = tuple(len(_count(state, rf"stages\.{s}\.blocks\.(\d+)\.")) for s in stages)
    preact = "norm.weight" in state
    basic = "stages.0.blocks.0.conv3.weight" not in state
    if basic and not preact:
        raise CheckpointError(f"{source}: post-activation basic units are not a ResNetV2 layout vitkit builds")
    fields: dict[str, Any] = dict(
        layers=layers,
        width=int(stem.shape[0]),
        in_chans=int(stem.shape[1]),
        num_classes=int(state["head.fc.weight"].shape[0]) if "head.fc.weight" in state else 0,
        block="preact_basic" if basic else ("preact_bottleneck" if preact else "bottleneck"),
        stem="cifar" if stem.shape[-1] == 3 else ("fixed" if preact else "same"),
    )
    cfg = base.replace(**fields) if base is not None else ResNetV2Config(**fields)
    return dict(state), cfg


# ------------------------------------------------------------------------------------------ adaptation
def adapt_resnetv2(state: dict[str, torch.Tensor], src: ResNetV2Config, dst: ResNetV2Config) -> dict[str, torch.Tensor]:
    """A CNN takes any image size as it is; only a new class count changes shapes (the head is dropped)."""
    state = dict(state)
    drop_head(state, src, dst)
    return state
