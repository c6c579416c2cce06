"""Masked-autoencoder checkpoints: the official ``models_mae.py`` files, transformers' ``ViTMAEForPreTraining``
folders, and the export of the pre-trained encoder as a plain vitkit ViT.

Official layout (``torch.save({"model": state_dict})``)::

    cls_token, pos_embed (fixed sin-cos), patch_embed.proj.*, blocks.{i}.* (timm names), norm.*,
    decoder_embed.*, mask_token, decoder_pos_embed (fixed), decoder_blocks.{i}.*, decoder_norm.*, decoder_pred.*

vitkit keeps the encoder as a ViT under ``encoder.`` and recomputes both sin-cos tables, so a converter checks
that the stored tables are the sin-cos ones (a learned table would change the model) and drops them.
transformers' layout is the ViT one under ``vit.`` and ``decoder.decoder_layers.{i}`` (hub files) or
``decoder.decoder_encoder.layer.{i}`` (written by transformers >= 5); its ``layer_norm_eps`` (1e-12) and
``norm_pix_loss`` travel with the config.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from torch import nn

from vitkit.config import ModelConfig, ViTConfig
from vitkit.config.mae import MAEConfig
from vitkit.layers.pos_embed import sincos_2d
from vitkit.models.vit import VisionTransformer
from vitkit.weights.adapt import position_grid
from vitkit.weights.errors import CheckpointError
from vitkit.weights.hf import ACTIVATIONS, LAYER_MODULES, _cat, _split3, hf_rules
from vitkit.weights.rules import Rule, apply_rules, rule, unsupported

log = logging.getLogger("vitkit.weights")

HF_MODEL_TYPE = "vit_mae"
# transformers' ViTMAEConfig defaults, for keys a config.json leaves out (ViT-B/16, the 512/8/16 decoder).
HF_MAE_DEFAULTS = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
    layer_norm_eps=1e-12, image_size=224, patch_size=16, num_channels=3, qkv_bias=True, decoder_hidden_size=512,
    decoder_num_hidden_layers=8, decoder_num_attention_heads=16, decoder_intermediate_size=2048, mask_ratio=0.75,
    norm_pix_loss=False,
)  # fmt: skip
ENCODER = "encoder."
TABLES = ("pos_embed", "decoder_pos_embed")  # fixed sin-cos, recomputed by vitkit


def is_mae_layout(keys) -> bool:
    """An official MAE pre-training state dict: a timm-style encoder plus the decoder."""
    keys = set(keys)
    return {"patch_embed.proj.weight", "mask_token", "decoder_pred.weight"} <= keys


def _count(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _check_table(stored: torch.Tensor, grid: tuple[int, int], name: str, source: str) -> None:
    """A stored position table must be the fixed sin-cos one (zero class-token row first), which vitkit recomputes."""
    table = sincos_2d(grid, stored.shape[-1])
    expected = torch.cat([table.new_zeros(1, table.shape[1]), table])
    if stored.reshape(expected.shape).float().sub(expected).abs().max() > 1e-4:
        raise CheckpointError(
            f"{source}: '{name}' is not the fixed 2D sin-cos table MAE uses (it was trained or laid out "
            "differently); vitkit's MAE recomputes that table, so these weights would not reproduce the model"
        )


def _heads_for(embed_dim: int, base: ModelConfig | None, depth: int) -> tuple[int, int]:
    """(encoder heads, decoder heads): not stored in a state dict; from the named model or the registry's MAE."""
    if base is not None:  # the named MAE (the loader passes a config of this family only)
        return base.num_heads, base.decoder_num_heads
    from vitkit.config.mae import MODELS

    for cfg in MODELS.values():
        if cfg.embed_dim == embed_dim and cfg.depth == depth:
            return cfg.num_heads, cfg.decoder_num_heads
    raise CheckpointError(
        f"an MAE state dict does not record attention heads and no registered MAE has width {embed_dim} and depth "
        f"{depth}; name the model (model='mae_vit_base_patch16', see `vitkit models`)"
    )


def convert_official(
    state: dict[str, torch.Tensor], base: ModelConfig | None = None, source: str = "MAE checkpoint"
) -> tuple[dict[str, torch.Tensor], MAEConfig]:
    """facebookresearch/mae ``models_mae`` tensors -> (vitkit MAE state dict, config). Pure: builds no model.

    Heads and preprocessing come from ``base`` (a registry MAE config) or, failing that, the registry's MAE of
    the same width and depth; norm_pix_loss and mask ratio are the paper's (True, 0.75) unless ``base`` says."""
    proj = state["patch_embed.proj.weight"]  # (D, C, P, P)
    depth = _count(state, r"blocks\.(\d+)\.")
    decoder_depth = _count(state, r"decoder_blocks\.(\d+)\.")
    allowed = {"cls_token", "mask_token", *TABLES}
    prefixes = ("patch_embed.proj.", "blocks.", "norm.", "decoder_embed.", "decoder_blocks.", "decoder_norm.",
                "decoder_pred.")  # fmt: skip
    leftover = sorted(k for k in state if k not in allowed and not k.startswith(prefixes))
    if leftover:
        raise unsupported(leftover, source, {"head": "a classifier head (a fine-tuned model, not MAE pre-training)"})
    grid, with_prefix = position_grid(state["pos_embed"].shape[1], 1, source)
    if not with_prefix:
        raise CheckpointError(f"{source}: 'pos_embed' has no class-token row; expected models_mae's (1, 1 + N, D)")
    for name in TABLES:
        _check_table(state[name], grid, name, source)
    heads, decoder_heads = _heads_for(proj.shape[0], base, depth)
    fields = dict(
        img_size=(grid[0] * proj.shape[2], grid[1] * proj.shape[3]),
        patch_size=tuple(proj.shape[2:]),
        in_chans=proj.shape[1],
        embed_dim=proj.shape[0],
        depth=depth,
        num_heads=heads,
        mlp_dim=state["blocks.0.mlp.fc1.weight"].shape[0],
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        decoder_embed_dim=state["decoder_embed.weight"].shape[0],
        decoder_depth=decoder_depth,
        decoder_num_heads=decoder_heads,
        decoder_mlp_dim=state["decoder_blocks.0.mlp.fc1.weight"].shape[0]
        if decoder_depth
        else 4 * state["decoder_embed.weight"].shape[0],
    )
    cfg = base.replace(**fields) if base is not None else MAEConfig(**fields)
    out = {(k if k.startswith("decoder") or k == "mask_token" else ENCODER + k): v for k, v in state.items()}
    return {k: v for k, v in out.items() if k not in (ENCODER + "pos_embed", "decoder_pos_embed")}, cfg


# ---------------------------------------------------------------------------------------------- transformers
def _decoder_layer_rules(keys: set[str], depth: int) -> list[Rule]:
    """vitkit ``decoder_blocks.{i}`` <- transformers' decoder layer, in whichever of its three spellings."""
    rules = []
    for i in range(depth):
        for layer in (f"decoder.decoder_layers.{i}.", f"decoder.decoder_encoder.layer.{i}."):
            if any(k.startswith(layer) for k in keys):
                break
        new = f"{layer}attention.q_proj.weight" in keys  # transformers >= 5 in-memory names
        qkv = ("q_proj", "k_proj", "v_proj") if new else ("attention.query", "attention.key", "attention.value")
        for w in ("weight", "bias"):
            src = [f"{layer}attention.{m}.{w}" for m in qkv]
            rules.append(rule(f"decoder_blocks.{i}.attn.qkv.{w}", *src, fn=_cat, inv=_split3, optional=w == "bias"))
            rules += [rule(f"decoder_blocks.{i}.{mine}.{w}", f"{layer}{n if new else c}.{w}") for mine, c, n in
                      LAYER_MODULES]  # fmt: skip
    return rules


def convert_hf_mae(
    state: dict[str, torch.Tensor],
    config: dict[str, Any],
    preprocessor: dict[str, Any] | None = None,
    source: str = "Hugging Face ViTMAE checkpoint",
) -> tuple[dict[str, torch.Tensor], MAEConfig]:
    """``ViTMAEForPreTraining`` tensors + config.json -> (vitkit MAE state dict, config). Pure."""
    c = {**HF_MAE_DEFAULTS, **config}
    act = ACTIVATIONS.get(c["hidden_act"])
    if act is None:
        raise CheckpointError(f"{source}: hidden_act {c['hidden_act']!r} is not one of {sorted(ACTIVATIONS)}")
    keys = set(state)
    depth, decoder_depth = c["num_hidden_layers"], c["decoder_num_hidden_layers"]
    encoder_rules = hf_rules("vit.", depth, "vit.layers.0.layernorm_before.weight" in keys, {})
    decoder_rules = [
        rule("mask_token", "decoder.mask_token"),
        *[
            rule(f"{m}.{w}", f"decoder.{m}.{w}")
            for m in ("decoder_embed", "decoder_norm", "decoder_pred")
            for w in ("weight", "bias")
        ],  # fmt: skip
        *_decoder_layer_rules(keys, decoder_depth),
    ]
    encoder, leftover = apply_rules(encoder_rules, state, source)
    decoder, leftover = apply_rules(decoder_rules, {k: state[k] for k in leftover}, source)
    tables = {"pos_embed": encoder.pop("pos_embed"), "decoder_pos_embed": state.get("decoder.decoder_pos_embed")}
    leftover = [k for k in leftover if k != "decoder.decoder_pos_embed"]
    if leftover:
        raise unsupported(leftover, source, {})
    prep = preprocessor or {}
    cfg = MAEConfig(
        img_size=c["image_size"],
        patch_size=c["patch_size"],
        in_chans=c["num_channels"],
        embed_dim=c["hidden_size"],
        depth=depth,
        num_heads=c["num_attention_heads"],
        mlp_dim=c["intermediate_size"],
        qkv_bias=c["qkv_bias"],
        decoder_embed_dim=c["decoder_hidden_size"],
        decoder_depth=decoder_depth,
        decoder_num_heads=c["decoder_num_attention_heads"],
        decoder_mlp_dim=c["decoder_intermediate_size"],
        mask_ratio=c["mask_ratio"],
        norm_pix_loss=bool(c["norm_pix_loss"]),
        norm_eps=float(c["layer_norm_eps"]),
        act_layer=act,
        mean=tuple(prep.get("image_mean", (0.485, 0.456, 0.406))),
        std=tuple(prep.get("image_std", (0.229, 0.224, 0.225))),
    )
    for name, table in tables.items():
        if table is not None:
            _check_table(table, cfg.grid_size, name, source)
    return {**{ENCODER + k: v for k, v in encoder.items()}, **decoder}, cfg


# ---------------------------------------------------------------------------------------------- the encoder
def encoder_state(
    state: dict[str, torch.Tensor], cfg: MAEConfig, global_pool: str = "avg"
) -> tuple[dict[str, torch.Tensor], ViTConfig]:
    """The encoder of an MAE state dict as a plain ViT for fine-tuning (pure).

    The sin-cos table becomes a learned ``pos_embed`` initialised with it (as MAE fine-tunes); with
    ``global_pool='avg'`` (the paper's fine-tuning head) the final LayerNorm moves after pooling as ``fc_norm``,
    initialised with the pre-trained norm; ``'token'`` keeps the class token and the norm where they were."""
    if global_pool not in ("avg", "token"):
        raise ValueError(f"global_pool must be 'avg' or 'token', got {global_pool!r}")
    vit_cfg = cfg.encoder_config(pos_embed="learned", global_pool=global_pool, fc_norm=global_pool == "avg")
    out = {k[len(ENCODER) :]: v for k, v in state.items() if k.startswith(ENCODER)}
    table = sincos_2d(cfg.grid_size, cfg.embed_dim)
    out["pos_embed"] = torch.cat([table.new_zeros(1, cfg.embed_dim), table]).unsqueeze(0)
    if global_pool == "avg":
        out = {("fc_norm." + k[5:] if k.startswith("norm.") else k): v for k, v in out.items()}
    return out, vit_cfg


def export_encoder(model: nn.Module, global_pool: str = "avg") -> nn.Module:
    """A built MAE's encoder as a vitkit ViT (see :func:`encoder_state`), ready for ``save_pretrained``."""
    return _built(*encoder_state(model.state_dict(), model.cfg, global_pool)).eval()


def _built(state: dict[str, torch.Tensor], cfg: ViTConfig) -> nn.Module:
    vit = VisionTransformer(cfg)
    vit.load_state_dict(state)
    return vit


def take_encoder(
    state: dict[str, torch.Tensor], cfg: MAEConfig, source: str, global_pool: str = "avg"
) -> tuple[dict[str, torch.Tensor], ViTConfig]:
    """:func:`encoder_state` with the note that a whole MAE checkpoint was given where an encoder was expected."""
    log.warning(
        "note: %s is a whole MAE (encoder and decoder); taking its encoder as a ViT with %s pooling and dropping "
        "the decoder (to skip this note, export it once: vitkit convert CKPT encoder.safetensors --num-classes 0)",
        source,
        "average" if global_pool == "avg" else "class-token",
    )
    return encoder_state(state, cfg, global_pool)
