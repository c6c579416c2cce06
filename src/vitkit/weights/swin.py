"""Swin checkpoints -> vitkit: timm state dicts (both layouts), the original release's ``.pth``, and transformers'
``SwinForImageClassification`` / ``SwinModel`` folders; plus Swin's shape adaptation (bias-table resampling).

vitkit's names are timm's current layout. The layouts differ only in where patch merging sits and in the head::

    timm >= 0.9 (vitkit)          layers.{s}.downsample.* opens stage s (s >= 1)   head.fc.{weight,bias}
    original release, timm < 0.9  layers.{s}.downsample.* closes stage s (s < S-1) head.{weight,bias}
                                  ({"model": state_dict}; also relative_position_index / attn_mask buffers)
    transformers                  {p}encoder.layers.{s}.downsample closes stage s; blocks.{b}.attention.self.
                                  {query,key,value,relative_position_bias_table}, ...; classifier.*

Buffers that the window and image size fix (``relative_position_index``, ``attn_mask``) are dropped and rebuilt;
an ``attn_mask`` tells the training resolution of an original file. What no format stores (preprocessing, and
the image size of a timm file) comes from the named registry model.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import torch

from vitkit.config import ModelConfig
from vitkit.config.swin import IMAGENET_MEAN, IMAGENET_STD, SwinConfig
from vitkit.layers.relative_position import resample_bias_table
from vitkit.weights.adapt import drop_head
from vitkit.weights.errors import CheckpointError
from vitkit.weights.hf import ACTIVATIONS, HF_ACT, _cat, _labels, _split3, hf_preprocessor
from vitkit.weights.rules import Rule, apply_rules, invert_rules, rule, unsupported

log = logging.getLogger("vitkit.weights")

HF_MODEL_TYPE = "swin"
BUFFERS = ("relative_position_index", "attn_mask")
TABLE = "relative_position_bias_table"
_TABLE_KEY = re.compile(rf"^layers\.(\d+)\.blocks\.(\d+)\.attn\.{TABLE}$")
UNSUPPORTED = {
    "absolute_pos_embed": "absolute position embeddings (ape=True)",
    "position_embeddings": "absolute position embeddings (use_absolute_embeddings=True)",
    "logit_scale": "Swin V2 cosine attention",
    "cpb_mlp": "Swin V2 continuous position bias",
    "mask_token": "a masked-image-modelling token (SimMIM)",
    "layers_": "a features_only backbone",
}
# transformers' SwinConfig defaults, for keys a config.json leaves out.
HF_DEFAULTS = dict(
    image_size=224, patch_size=4, num_channels=3, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
    window_size=7, mlp_ratio=4.0, qkv_bias=True, hidden_act="gelu", layer_norm_eps=1e-5,
    use_absolute_embeddings=False,
)  # fmt: skip


def is_swin_layout(keys: Any) -> bool:
    """A timm / original Swin state dict: window-attention bias tables under ``layers.{s}.blocks.{b}``."""
    return any(_TABLE_KEY.match(k) for k in keys)


def _counts(keys: Any, pattern: str) -> dict[int, int]:
    """{group 1: 1 + max group 2} over the keys matching ``pattern`` (stage -> number of blocks)."""
    out: dict[int, int] = {}
    for k in keys:
        if m := re.match(pattern, k):
            out[int(m.group(1))] = max(out.get(int(m.group(1)), 0), int(m.group(2)) + 1)
    return out


def _window(rows: int, where: str, source: str) -> int:
    side = math.isqrt(rows)
    if side * side != rows or side % 2 == 0:
        raise CheckpointError(f"{source}: {where} has {rows} rows, not (2M-1)^2 for a square MxM window")
    return (side + 1) // 2


# ------------------------------------------------------------------------------------------- timm / original
def is_original_layout(keys: Any) -> bool:
    """The original release's (and timm < 0.9's) layout: merging closes a stage, the head is ``head.*``."""
    return any(k == "head.weight" or k.startswith("layers.0.downsample.") for k in keys)


def swin_format(keys: Any) -> str:
    """Format name of a Swin state dict: 'swin_original' (original release, timm < 0.9) or 'timm'."""
    return "swin_original" if is_original_layout(keys) else "timm"


def to_current_layout(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """(state in timm's current layout, whether it was in the original one). Buffers are dropped."""
    original = is_original_layout(state)
    out = {}
    for key, value in state.items():
        if key.endswith(BUFFERS):
            continue
        if original:  # merging moves from the end of stage s to the start of stage s + 1; head -> head.fc
            key = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)
            key = re.sub(r"^head\.", "head.fc.", key)
        out[key] = value
    return out, original


def _mask_img_size(state: dict[str, torch.Tensor], window: int, patch: tuple[int, int]) -> tuple[int, int] | None:
    """The training image size an original file's first shifted-window mask implies (square maps only)."""
    mask = state.get("layers.0.blocks.1.attn_mask")
    if mask is None or mask.ndim != 3:
        return None
    side = math.isqrt(mask.shape[0])
    return (side * window * patch[0], side * window * patch[1]) if side * side == mask.shape[0] else None


def swin_keys(cfg: SwinConfig) -> set[str]:
    """Every state-dict key of a vitkit (timm-layout) Swin built from ``cfg``."""
    wb = ("weight", "bias")
    keys = {f"patch_embed.{m}.{w}" for m in ("proj", "norm") for w in wb} | {f"norm.{w}" for w in wb}
    keys |= {f"head.fc.{w}" for w in wb} if cfg.num_classes else set()
    for s, depth in enumerate(cfg.depths):
        if s:
            keys |= {f"layers.{s}.downsample.norm.{w}" for w in wb} | {f"layers.{s}.downsample.reduction.weight"}
        for b in range(depth):
            p = f"layers.{s}.blocks.{b}."
            keys |= {f"{p}{m}.{w}" for m in ("norm1", "norm2", "attn.proj", "mlp.fc1", "mlp.fc2") for w in wb}
            keys |= {f"{p}attn.qkv.weight", f"{p}attn.{TABLE}"} | ({f"{p}attn.qkv.bias"} if cfg.qkv_bias else set())
    return keys


def convert_timm_swin(
    state: dict[str, torch.Tensor], base: ModelConfig | None = None, source: str = "Swin state dict"
) -> tuple[dict[str, torch.Tensor], SwinConfig]:
    """timm (either layout) or original-release tensors -> (vitkit state dict, config). Pure: builds no model.

    ``base`` (a named registry config) supplies preprocessing and the image size; without it the size is read
    from an original file's attention mask, or taken as the one where the last stage is a single window.
    """
    if not is_swin_layout(state):
        raise CheckpointError(
            f"{source}: not a Swin state dict (no 'layers.<s>.blocks.<b>.attn.{TABLE}'); it holds another "
            "family's weights: name a model of that family (see `vitkit models`) or pass a Swin checkpoint"
        )
    leftover = sorted(k for k in state if any(p in k for p in UNSUPPORTED))
    if leftover:
        raise unsupported(leftover, source, UNSUPPORTED)
    current, original = to_current_layout(state)
    depths = _counts(current, r"^layers\.(\d+)\.blocks\.(\d+)\.")
    if sorted(depths) != list(range(len(depths))) or "patch_embed.proj.weight" not in current:
        raise CheckpointError(f"{source}: incomplete Swin state dict (stages {sorted(depths)}, patch embedding?)")
    proj = current["patch_embed.proj.weight"]  # (C, in_chans, P, P)
    tables = [current[f"layers.{s}.blocks.0.attn.{TABLE}"] for s in range(len(depths))]
    windows = {_window(t.shape[0], f"layers.{s}.blocks.0.attn.{TABLE}", source) for s, t in enumerate(tables)}
    if len(windows) > 1:
        raise CheckpointError(f"{source}: stages use different window sizes {sorted(windows)}; vitkit needs one")
    window, patch = windows.pop(), (int(proj.shape[2]), int(proj.shape[3]))
    stages = len(depths)
    guess = (window * patch[0] * 2 ** (stages - 1), window * patch[1] * 2 ** (stages - 1))
    img_size = base.img_size if base is not None else (_mask_img_size(state, window, patch) or guess)
    fields = dict(
        img_size=img_size,
        patch_size=patch,
        in_chans=int(proj.shape[1]),
        embed_dim=int(proj.shape[0]),
        depths=tuple(depths[s] for s in range(stages)),
        num_heads=tuple(int(t.shape[1]) for t in tables),
        window_size=window,
        mlp_ratio=current["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / proj.shape[0],
        qkv_bias="layers.0.blocks.0.attn.qkv.bias" in current,
        num_classes=int(current["head.fc.weight"].shape[0]) if "head.fc.weight" in current else 0,
    )
    try:
        cfg = base.replace(**fields) if base is not None else SwinConfig(**fields)
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None
    extra = sorted(set(current) - swin_keys(cfg))
    if extra:
        raise unsupported(extra, source, UNSUPPORTED)
    log.info("read a Swin state dict in %s layout", "the original (timm < 0.9)" if original else "timm's")
    return current, cfg


# --------------------------------------------------------------------------------------------- transformers
def hf_swin_rules(p: str, depths: tuple[int, ...], new_layout: bool) -> list[Rule]:
    """The table between vitkit keys and a transformers Swin with prefix ``p`` ('swin.' or '' for SwinModel)."""
    e, wb = f"{p}embeddings.", ("weight", "bias")
    rules = [rule(f"patch_embed.proj.{w}", f"{e}patch_embeddings.projection.{w}") for w in wb]
    rules += [rule(f"patch_embed.norm.{w}", f"{e}norm.{w}") for w in wb]
    rules += [rule(f"norm.{w}", f"{p}layernorm.{w}") for w in wb]
    rules += [rule(f"head.fc.{w}", f"classifier.{w}", optional=True) for w in wb]
    if new_layout:  # transformers >= 5 in memory
        qkv = ("attention.q_proj", "attention.k_proj", "attention.v_proj")
        table, out, fc1, fc2 = "attention.relative_position_bias.", "attention.o_proj", "mlp.fc1", "mlp.fc2"
    else:  # the layout on disk
        qkv = tuple(f"attention.self.{n}" for n in ("query", "key", "value"))
        table, out, fc1, fc2 = "attention.self.", "attention.output.dense", "intermediate.dense", "output.dense"
    for s, depth in enumerate(depths):
        if s:  # transformers merges at the end of stage s - 1
            down = f"{p}encoder.layers.{s - 1}.downsample."
            rules += [rule(f"layers.{s}.downsample.norm.{w}", f"{down}norm.{w}") for w in wb]
            rules.append(rule(f"layers.{s}.downsample.reduction.weight", f"{down}reduction.weight"))
        for b in range(depth):
            src, dst = f"{p}encoder.layers.{s}.blocks.{b}.", f"layers.{s}.blocks.{b}."
            rules.append(rule(f"{dst}attn.{TABLE}", f"{src}{table}{TABLE}"))
            for w in wb:
                parts = [f"{src}{m}.{w}" for m in qkv]
                rules.append(rule(f"{dst}attn.qkv.{w}", *parts, fn=_cat, inv=_split3, optional=w == "bias"))
                for mine, theirs in [("norm1", "layernorm_before"), ("norm2", "layernorm_after"),
                                     ("attn.proj", out), ("mlp.fc1", fc1), ("mlp.fc2", fc2)]:  # fmt: skip
                    rules.append(rule(f"{dst}{mine}.{w}", f"{src}{theirs}.{w}"))
    return rules


def convert_hf_swin(
    state: dict[str, torch.Tensor],
    config: dict[str, Any],
    preprocessor: dict[str, Any] | None = None,
    source: str = "Hugging Face Swin checkpoint",
) -> tuple[dict[str, torch.Tensor], SwinConfig]:
    """transformers Swin tensors + config.json (+ preprocessor_config.json) -> (vitkit state dict, config). Pure."""
    c = {**HF_DEFAULTS, **config}
    state = {k: v for k, v in state.items() if not k.endswith(BUFFERS)}
    p = "swin." if any(k.startswith("swin.") for k in state) else ""
    depths = tuple(int(d) for d in c["depths"])
    new_layout = any(".attention.q_proj." in k for k in state)
    out, leftover = apply_rules(hf_swin_rules(p, depths, new_layout), state, source)
    if leftover:
        raise unsupported(leftover, source, UNSUPPORTED)
    classes = _labels(c, {"head.weight": out["head.fc.weight"]} if "head.fc.weight" in out else {})
    heads = int(out["head.fc.weight"].shape[0]) if "head.fc.weight" in out else 0
    return out, swin_config_from_hf(config, preprocessor, heads, classes, source)


def swin_config_from_hf(
    config: dict[str, Any], preprocessor: dict[str, Any] | None, num_classes: int, classes: list[str] | None,
    source: str,
) -> SwinConfig:  # fmt: skip
    """A transformers Swin config.json (and preprocessor) as vitkit's SwinConfig; numerics travel in it."""
    c = {**HF_DEFAULTS, **config}
    if c["use_absolute_embeddings"]:
        raise CheckpointError(f"{source}: use_absolute_embeddings=True is not supported by vitkit's Swin")
    act = ACTIVATIONS.get(c["hidden_act"])
    if act is None:
        raise CheckpointError(f"{source}: hidden_act {c['hidden_act']!r} is not one of {sorted(ACTIVATIONS)}")
    if float(c["layer_norm_eps"]) != 1e-5:
        log.warning("%s: layer_norm_eps %g; transformers keeps 1e-5 in the embedding and merging norms, vitkit uses "
                    "one value for all", source, c["layer_norm_eps"])  # fmt: skip
    prep = preprocessor or {}
    try:
        return SwinConfig(
            img_size=c["image_size"],
            patch_size=c["patch_size"],
            in_chans=c["num_channels"],
            num_classes=num_classes,
            embed_dim=c["embed_dim"],
            depths=tuple(int(d) for d in c["depths"]),
            num_heads=tuple(c["num_heads"]),
            window_size=int(c["window_size"]),
            mlp_ratio=float(c["mlp_ratio"]),
            qkv_bias=bool(c["qkv_bias"]),
            norm_eps=float(c["layer_norm_eps"]),
            act_layer=act,
            mean=tuple(prep.get("image_mean", IMAGENET_MEAN)),
            std=tuple(prep.get("image_std", IMAGENET_STD)),
            crop_pct=float(prep.get("crop_pct") or 1.0),  # transformers' processor resizes without cropping
            extra={"classes": classes} if classes else {},
        )
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None


def to_hf_swin(state: dict[str, torch.Tensor], cfg: SwinConfig) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """vitkit -> (transformers state dict, config.json, preprocessor_config.json), for ``from_pretrained``."""
    p = "swin." if cfg.num_classes else ""
    out, leftover = invert_rules(hf_swin_rules(p, cfg.depths, False), state, "a transformers Swin")
    if leftover:
        raise CheckpointError(f"cannot write a transformers Swin: no place for {leftover}")
    classes = cfg.extra.get("classes") or [f"LABEL_{i}" for i in range(cfg.num_classes)]
    square = cfg.img_size[0] == cfg.img_size[1] and cfg.patch_size[0] == cfg.patch_size[1]
    config = dict(
        model_type=HF_MODEL_TYPE, architectures=["SwinForImageClassification" if cfg.num_classes else "SwinModel"],
        image_size=cfg.img_size[0] if square else list(cfg.img_size),
        patch_size=cfg.patch_size[0] if square else list(cfg.patch_size), num_channels=cfg.in_chans,
        embed_dim=cfg.embed_dim, depths=list(cfg.depths), num_heads=list(cfg.num_heads), window_size=cfg.window_size,
        mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, hidden_act=HF_ACT[cfg.act_layer], layer_norm_eps=cfg.norm_eps,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.0, use_absolute_embeddings=False,
        encoder_stride=cfg.reduction, id2label={str(i): name for i, name in enumerate(classes)},
        label2id={name: i for i, name in enumerate(classes)},
    )  # fmt: skip
    return out, config, hf_preprocessor(cfg)


# ------------------------------------------------------------------------------------------------ adaptation
def adapt_swin(state: dict[str, torch.Tensor], src: SwinConfig, dst: SwinConfig) -> dict[str, torch.Tensor]:
    """Weights written for ``src`` reshaped for ``dst``: bias tables resampled bicubically to a new window (the
    image size itself changes no tensor), and a new head when the class count differs."""
    state = dict(state)
    if src.patch_size != dst.patch_size or src.embed_dim != dst.embed_dim or src.depths != dst.depths:
        raise CheckpointError(
            f"a Swin with patch {src.patch_size}, width {src.embed_dim}, depths {src.depths} cannot load into one "
            f"with patch {dst.patch_size}, width {dst.embed_dim}, depths {dst.depths}; keep those fields as stored"
        )
    if src.window_size != dst.window_size:
        for key in [k for k in state if k.endswith(TABLE)]:
            state[key] = resample_bias_table(state[key], dst.window_size)
        log.info("resampled the relative position bias tables from %dx%d to %dx%d windows (bicubic)",
                 src.window_size, src.window_size, dst.window_size, dst.window_size)  # fmt: skip
    drop_head(state, src, dst)
    return state
