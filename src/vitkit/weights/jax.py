"""Original JAX/Flax checkpoints (``.npz``) of google-research/vision_transformer and big_vision -> vitkit.

Key layout (``prefix`` is '', 'opt/target/', 'params/' or 'params/img/')::

    embedding/kernel (P, P, C, D), embedding/bias      patch projection (HWIO)
    cls (1, 1, D)                                      only with a class token
    Transformer/posembed_input/pos_embedding           (1, [1 +] N, D); big_vision: pos_embedding (1, N, D)
    Transformer/encoderblock_{i}/LayerNorm_{0,2}       vit_jax; big_vision numbers them 0 and 1
        MultiHeadDotProductAttention_1/{query,key,value}/kernel (D, H, D/H), .../bias (H, D/H), out/kernel (H, D/H, D)
        MlpBlock_3/Dense_{0,1}/kernel (in, out)        big_vision: MultiHeadDotProductAttention_0, MlpBlock_0
    Transformer/encoder_norm/{scale,bias}
    pre_logits/{kernel,bias}                           the pre-training head (Linear + tanh)
    head/{kernel,bias}
    conv_root, gn_root, block{s}/unit{u}/{conv,gn}{1,2,3}, conv_proj, gn_proj   the R50 hybrid's ResNet

The architecture is read from the arrays. Numerics travel in the config: Flax's GELU is the tanh
approximation, LayerNorm epsilon 1e-6, inputs scaled to [-1, 1], evaluation without a centre crop.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from vitkit.config import ViTConfig
from vitkit.weights.adapt import add_prefix_positions, position_grid
from vitkit.weights.errors import CheckpointError
from vitkit.weights.rules import Rule, apply_rules, rule, unsupported

PREFIXES = ("opt/target/", "params/img/", "params/", "")
POS_KEYS = ("Transformer/posembed_input/pos_embedding", "pos_embedding", "Transformer/pos_embedding")
UNSUPPORTED = {"MAPHead": "attention-pooling (MAP) head", "probe": "attention-pooling (MAP) head"}


# ------------------------------------------------------------------------------------- array layouts
def _conv(k: np.ndarray) -> np.ndarray:
    return k.transpose(3, 2, 0, 1)  # HWIO -> OIHW


def _dense(k: np.ndarray) -> np.ndarray:
    return k.T  # (in, out) -> (out, in)


def _vector(v: np.ndarray) -> np.ndarray:
    return v.reshape(-1)  # some GroupNorm scales are stored as (1, 1, 1, C)


def _qkv_kernel(*kernels: np.ndarray) -> np.ndarray:
    # each (D, H, D/H) -> (D_out = H * D/H, D_in), stacked as [q; k; v]
    return np.concatenate([k.reshape(k.shape[0], -1).T for k in kernels])


def _qkv_bias(*biases: np.ndarray) -> np.ndarray:
    return np.concatenate([b.reshape(-1) for b in biases])


def _out_kernel(k: np.ndarray) -> np.ndarray:
    return k.reshape(-1, k.shape[-1]).T  # (H, D/H, D) -> (D, H * D/H)


# --------------------------------------------------------------------------------------------- detection
def find_prefix(keys) -> str | None:
    """The key prefix of a ViT checkpoint, or None when ``keys`` are not one."""
    keys = set(keys)
    for prefix in PREFIXES:
        if f"{prefix}embedding/kernel" in keys:
            return prefix
    return None


def _sub_index(keys: list[str], block: str, module: str) -> list[int]:
    found = {int(m.group(1)) for k in keys if (m := re.match(rf"{re.escape(block)}{module}_(\d+)/", k))}
    return sorted(found)


def _depth(keys, p: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(rf"{re.escape(p)}Transformer/encoderblock_(\d+)/", k))}
    if not found or sorted(found) != list(range(len(found))):
        raise CheckpointError(f"no consecutive Transformer/encoderblock_<i> entries found (have {sorted(found)})")
    return len(found)


def _backbone_layers(keys, p: str) -> tuple[int, ...] | None:
    if f"{p}conv_root/kernel" not in keys:
        return None
    units: dict[int, int] = {}
    for k in keys:
        if m := re.match(rf"{re.escape(p)}block(\d+)/unit(\d+)/", k):
            units[int(m.group(1))] = max(units.get(int(m.group(1)), 0), int(m.group(2)))
    return tuple(units[s] for s in sorted(units))  # () for a root-only ResNet (R+Ti/16)


# --------------------------------------------------------------------------------------------- tables
def _block_rules(p: str, i: int, keys: list[str]) -> list[Rule]:
    b = f"{p}Transformer/encoderblock_{i}/"
    ln, mha, mlp = (_sub_index(keys, b, n) for n in ("LayerNorm", "MultiHeadDotProductAttention", "MlpBlock"))
    if len(ln) != 2 or len(mha) != 1 or len(mlp) != 1:
        raise CheckpointError(f"encoderblock_{i} does not hold two LayerNorms, one attention and one MLP block")
    a, m, t = f"{b}MultiHeadDotProductAttention_{mha[0]}/", f"{b}MlpBlock_{mlp[0]}/", f"blocks.{i}."
    return [
        rule(t + "norm1.weight", f"{b}LayerNorm_{ln[0]}/scale"),
        rule(t + "norm1.bias", f"{b}LayerNorm_{ln[0]}/bias"),
        rule(t + "attn.qkv.weight", *(f"{a}{n}/kernel" for n in ("query", "key", "value")), fn=_qkv_kernel),
        rule(t + "attn.qkv.bias", *(f"{a}{n}/bias" for n in ("query", "key", "value")), fn=_qkv_bias, optional=True),
        rule(t + "attn.proj.weight", f"{a}out/kernel", fn=_out_kernel),
        rule(t + "attn.proj.bias", f"{a}out/bias"),
        rule(t + "norm2.weight", f"{b}LayerNorm_{ln[1]}/scale"),
        rule(t + "norm2.bias", f"{b}LayerNorm_{ln[1]}/bias"),
        *[rule(t + f"mlp.fc{r + 1}.weight", f"{m}Dense_{r}/kernel", fn=_dense) for r in range(2)],
        *[rule(t + f"mlp.fc{r + 1}.bias", f"{m}Dense_{r}/bias") for r in range(2)],
    ]


def _norm_rules(dst: str, src: str, optional: bool = False) -> list[Rule]:
    return [
        rule(f"{dst}.weight", f"{src}/scale", fn=_vector, optional=optional),
        rule(f"{dst}.bias", f"{src}/bias", fn=_vector, optional=optional),
    ]


def _backbone_rules(p: str, layers: tuple[int, ...]) -> list[Rule]:
    t = "patch_embed.backbone."
    stem = t + ("stem." if layers else "")  # timm names a root-only backbone by its stem's modules
    rules = [rule(stem + "conv.weight", f"{p}conv_root/kernel", fn=_conv)]
    rules += _norm_rules(stem + "norm", f"{p}gn_root")
    for s, units in enumerate(layers):
        for u in range(units):
            src, dst = f"{p}block{s + 1}/unit{u + 1}/", f"{t}stages.{s}.blocks.{u}."
            for r in (1, 2, 3):
                rules.append(rule(f"{dst}conv{r}.weight", f"{src}conv{r}/kernel", fn=_conv))
                rules += _norm_rules(f"{dst}norm{r}", f"{src}gn{r}")
            rules.append(rule(f"{dst}downsample.conv.weight", f"{src}conv_proj/kernel", fn=_conv, optional=True))
            rules += _norm_rules(f"{dst}downsample.norm", f"{src}gn_proj", optional=True)
    return rules


def jax_rules(keys: list[str], p: str, depth: int, pos_key: str, layers: tuple[int, ...] | None) -> list[Rule]:
    rules = [
        rule("patch_embed.proj.weight", f"{p}embedding/kernel", fn=_conv),
        rule("patch_embed.proj.bias", f"{p}embedding/bias"),
        rule("cls_token", f"{p}cls", optional=True),
        rule("pos_embed", pos_key),
        rule("norm.weight", f"{p}Transformer/encoder_norm/scale"),
        rule("norm.bias", f"{p}Transformer/encoder_norm/bias"),
        rule("pre_logits.fc.weight", f"{p}pre_logits/kernel", fn=_dense, optional=True),
        rule("pre_logits.fc.bias", f"{p}pre_logits/bias", optional=True),
        rule("head.weight", f"{p}head/kernel", fn=_dense, optional=True),
        rule("head.bias", f"{p}head/bias", optional=True),
    ]
    if layers is not None:
        rules += _backbone_rules(p, layers)
    for i in range(depth):
        rules += _block_rules(p, i, keys)
    return rules


# --------------------------------------------------------------------------------------------- converter
def convert_jax(
    arrays: dict[str, np.ndarray], base: ViTConfig | None = None, source: str = "JAX checkpoint"
) -> tuple[dict[str, torch.Tensor], ViTConfig]:
    """JAX arrays -> (vitkit state dict, config inferred from the arrays). Pure: builds no model.

    ``base`` (a registry config) supplies only what arrays cannot: the image grid when it is not square, and
    the preprocessing (mean, std, crop_pct).
    """
    keys = list(arrays)
    p = find_prefix(keys)
    if p is None:
        raise CheckpointError(f"{source}: no 'embedding/kernel' array; not a ViT checkpoint from vit_jax/big_vision")
    pos_key = next((p + k for k in POS_KEYS if p + k in arrays), None)
    if pos_key is None:
        raise CheckpointError(
            f"{source}: no learned position embeddings ({', '.join(p + k for k in POS_KEYS)}); fixed sin-cos "
            "position embeddings (big_vision posemb='sincos2d') are not supported"
        )
    depth = _depth(keys, p)
    layers = _backbone_layers(keys, p)
    state, leftover = apply_rules(jax_rules(keys, p, depth, pos_key, layers), arrays, source)
    if leftover:
        raise unsupported(leftover, source, UNSUPPORTED)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}

    emb = arrays[f"{p}embedding/kernel"]  # (P, P, C, D)
    (mha,) = _sub_index(keys, f"{p}Transformer/encoderblock_0/", "MultiHeadDotProductAttention")
    query = arrays[f"{p}Transformer/encoderblock_0/MultiHeadDotProductAttention_{mha}/query/kernel"]  # (D, H, D/H)
    class_token = "cls_token" in state
    stride = 4 * 2 ** max(len(layers) - 1, 0) if layers is not None else 1
    patch = (stride * emb.shape[0], stride * emb.shape[1])  # pixels per token
    hint = None if base is None else (base.img_size[0] // patch[0], base.img_size[1] // patch[1])
    grid, with_prefix = position_grid(state["pos_embed"].shape[1], int(class_token), source, hint)
    if not with_prefix:  # big_vision adds position embeddings before prepending [class]
        state["pos_embed"] = add_prefix_positions(state["pos_embed"], int(class_token))
    fields = dict(
        img_size=(grid[0] * patch[0], grid[1] * patch[1]),
        patch_size=(emb.shape[0], emb.shape[1]),
        in_chans=arrays[f"{p}conv_root/kernel"].shape[2] if layers is not None else emb.shape[2],
        embed_dim=emb.shape[-1],
        depth=depth,
        num_heads=query.shape[1],
        mlp_dim=state["blocks.0.mlp.fc1.weight"].shape[0],
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        class_token=class_token,
        global_pool="token" if class_token else "avg",
        representation_size=state["pre_logits.fc.weight"].shape[0] if "pre_logits.fc.weight" in state else None,
        num_classes=state["head.weight"].shape[0] if "head.weight" in state else 0,
        backbone_layers=layers,
        backbone_width=arrays[f"{p}conv_root/kernel"].shape[-1] if layers is not None else 64,
        act_layer="gelu_tanh",  # flax.linen.gelu defaults to approximate=True
        norm_eps=1e-6,  # flax.linen.LayerNorm default
    )
    if query.shape[1] * query.shape[2] != emb.shape[-1]:
        raise CheckpointError(f"{source}: query kernel {query.shape} does not split width {emb.shape[-1]} into heads")
    preprocessing = dict(mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0)  # inputs in [-1, 1], resize without crop
    if base is not None:
        preprocessing = dict(mean=base.mean, std=base.std, crop_pct=base.crop_pct)
    return state, ViTConfig(**fields, **preprocessing)
