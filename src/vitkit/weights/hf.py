"""Hugging Face transformers ViT / DeiT (``save_pretrained`` folders) <-> vitkit.

Checkpoint layout (``{p}`` is 'vit.' / 'deit.' for the classification models, '' for ``ViTModel``)::

    {p}embeddings.cls_token, .distillation_token (DeiT), .position_embeddings, .patch_embeddings.projection.*
    {p}encoder.layer.{i}.layernorm_before / attention.attention.{query,key,value} / attention.output.dense /
        layernorm_after / intermediate.dense / output.dense
    {p}layernorm, pooler.dense (ViTModel), classifier (ViT), cls_classifier + distillation_classifier (DeiT)

transformers >= 5 names the modules differently in memory (``layers.{i}.attention.q_proj`` ...) but still writes
the layout above; both are read. Numerics travel through the config: ``layer_norm_eps`` (HF's default is
1e-12, not timm's 1e-6) and ``hidden_act`` (exact or tanh GELU).
"""

from __future__ import annotations

from typing import Any

import torch

from vitkit.config import ViTConfig
from vitkit.weights.errors import CheckpointError, block_problems
from vitkit.weights.rules import Rule, apply_rules, invert_rules, rule, unsupported

ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
HF_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}
# transformers' ViTConfig defaults, used for keys a config.json leaves out.
HF_DEFAULTS = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
    layer_norm_eps=1e-12, image_size=224, patch_size=16, num_channels=3, qkv_bias=True,
)  # fmt: skip
MODEL_TYPES = ("vit", "deit")
# (vitkit module, classic on-disk module, transformers>=5 module) per encoder layer; q/k/v are handled apart.
LAYER_MODULES = [
    ("norm1", "layernorm_before", "layernorm_before"),
    ("attn.proj", "attention.output.dense", "attention.o_proj"),
    ("norm2", "layernorm_after", "layernorm_after"),
    ("mlp.fc1", "intermediate.dense", "mlp.fc1"),
    ("mlp.fc2", "output.dense", "mlp.fc2"),
]


def _cat(*parts: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts)


def _split3(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(p.clone() for p in t.chunk(3))


def hf_rules(p: str, depth: int, new_layout: bool, heads: dict[str, str]) -> list[Rule]:
    """The table between vitkit keys and HF keys with prefix ``p``; ``heads`` maps vitkit head -> HF module."""
    e = f"{p}embeddings."
    rules = [
        rule("cls_token", e + "cls_token"),
        rule("dist_token", e + "distillation_token", optional=True),
        rule("pos_embed", e + "position_embeddings"),
        rule("patch_embed.proj.weight", e + "patch_embeddings.projection.weight"),
        rule("patch_embed.proj.bias", e + "patch_embeddings.projection.bias"),
        rule("norm.weight", f"{p}layernorm.weight"),
        rule("norm.bias", f"{p}layernorm.bias"),
    ]
    for mine, theirs in heads.items():
        rules += [rule(f"{mine}.{w}", f"{theirs}.{w}", optional=True) for w in ("weight", "bias")]
    for i in range(depth):
        layer = f"{p}layers.{i}." if new_layout else f"{p}encoder.layer.{i}."
        qkv = (
            ("attention.q_proj", "attention.k_proj", "attention.v_proj")
            if new_layout
            else tuple(f"attention.attention.{n}" for n in ("query", "key", "value"))
        )
        for w in ("weight", "bias"):
            src = [f"{layer}{m}.{w}" for m in qkv]
            rules.append(rule(f"blocks.{i}.attn.qkv.{w}", *src, fn=_cat, inv=_split3, optional=w == "bias"))
            for mine, classic, new in LAYER_MODULES:
                rules.append(rule(f"blocks.{i}.{mine}.{w}", f"{layer}{new if new_layout else classic}.{w}"))
    return rules


def _prefix(keys: set[str]) -> str:
    for p in ("vit.", "deit.", ""):
        if f"{p}embeddings.patch_embeddings.projection.weight" in keys:
            return p
    raise CheckpointError("no 'embeddings.patch_embeddings.projection.weight'; not a transformers ViT checkpoint")


def _heads(model_type: str, base_model: bool) -> dict[str, str]:
    if base_model:
        return {"pre_logits.fc": "pooler.dense"}
    if model_type == "deit":
        return {"head": "cls_classifier", "head_dist": "distillation_classifier"}
    return {"head": "classifier"}


def convert_hf(
    state: dict[str, torch.Tensor],
    config: dict[str, Any],
    preprocessor: dict[str, Any] | None = None,
    source: str = "Hugging Face checkpoint",
) -> tuple[dict[str, torch.Tensor], ViTConfig]:
    """HF tensors + config.json (+ preprocessor_config.json) -> (vitkit state dict, config). Pure."""
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise CheckpointError(f"{source}: model_type {model_type!r} is not one of {MODEL_TYPES}")
    c = {**HF_DEFAULTS, **config}
    act = ACTIVATIONS.get(c["hidden_act"])
    if act is None:
        raise CheckpointError(f"{source}: hidden_act {c['hidden_act']!r} is not one of {sorted(ACTIVATIONS)}")
    p = _prefix(set(state))
    depth, new_layout = c["num_hidden_layers"], f"{p}layers.0.layernorm_before.weight" in state
    out, leftover = apply_rules(hf_rules(p, depth, new_layout, _heads(model_type, p == "")), state, source)
    if leftover:
        raise unsupported(leftover, source, {"pooler": "pooler of a classification model"})
    if "dist_token" in out and "head.weight" in out and "head_dist.weight" not in out:
        raise CheckpointError(
            f"{source}: a DeiT checkpoint with a distillation token but a single classifier "
            "(DeiTForImageClassification); only DeiTForImageClassificationWithTeacher is supported"
        )
    classes = _labels(c, out)
    prep = preprocessor or {}
    default_mean = (0.485, 0.456, 0.406) if model_type == "deit" else (0.5, 0.5, 0.5)
    default_std = (0.229, 0.224, 0.225) if model_type == "deit" else (0.5, 0.5, 0.5)
    cfg = ViTConfig(
        img_size=c["image_size"],
        patch_size=c["patch_size"],
        in_chans=c["num_channels"],
        num_classes=out["head.weight"].shape[0] if "head.weight" in out else 0,
        embed_dim=c["hidden_size"],
        depth=depth,
        num_heads=c["num_attention_heads"],
        mlp_dim=c["intermediate_size"],
        qkv_bias=c["qkv_bias"],
        distilled="dist_token" in out,
        representation_size=out["pre_logits.fc.weight"].shape[0] if "pre_logits.fc.weight" in out else None,
        norm_eps=float(c["layer_norm_eps"]),
        act_layer=act,
        mean=tuple(prep.get("image_mean", default_mean)),
        std=tuple(prep.get("image_std", default_std)),
        crop_pct=float(prep.get("crop_pct") or 1.0),  # ViTImageProcessor resizes without cropping
        extra={"classes": classes} if classes else {},
    )
    return out, cfg


def _labels(config: dict[str, Any], state: dict[str, torch.Tensor]) -> list[str] | None:
    """Class names from id2label, unless they are transformers' placeholders LABEL_0, LABEL_1, ..."""
    id2label = config.get("id2label") or {}
    n = state["head.weight"].shape[0] if "head.weight" in state else 0
    names = [str(id2label.get(str(i), id2label.get(i, ""))) for i in range(n)]
    if not n or names == [f"LABEL_{i}" for i in range(n)] or not all(names):
        return None
    return names


def to_hf(state: dict[str, torch.Tensor], cfg: ViTConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict]:
    """vitkit -> (HF state dict, config.json, preprocessor_config.json), loadable by ``from_pretrained``."""
    problems = []
    if cfg.backbone_layers is not None or cfg.stem_channels is not None:
        problems.append("a ResNet or convolutional stem (HF ViT embeds patches with one linear map)")
    if not cfg.class_token or cfg.global_pool != "token" or cfg.fc_norm:
        problems.append("average pooling (HF ViT classifies the [class] token)")
    problems += block_problems(cfg, "HF")
    if cfg.representation_size and cfg.num_classes:
        problems.append("a pre-logits layer before the classifier")
    if problems:
        raise CheckpointError(f"cannot write a Hugging Face ViT for this model: {'; '.join(problems)}")
    model_type = "deit" if cfg.distilled else "vit"
    base_model = cfg.num_classes == 0
    p = "" if base_model else f"{model_type}."
    arch = {"vit": "ViTForImageClassification", "deit": "DeiTForImageClassificationWithTeacher"}[model_type]
    out, leftover = invert_rules(hf_rules(p, cfg.depth, False, _heads(model_type, base_model)), state, "HF layout")
    if leftover:
        raise CheckpointError(f"cannot write a Hugging Face ViT: no place for {leftover}")
    classes = cfg.extra.get("classes") or [f"LABEL_{i}" for i in range(cfg.num_classes)]
    square = cfg.img_size[0] == cfg.img_size[1] and cfg.patch_size[0] == cfg.patch_size[1]
    config = dict(
        model_type=model_type,
        architectures=["ViTModel" if base_model else arch],
        hidden_size=cfg.embed_dim,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_dim,
        hidden_act=HF_ACT[cfg.act_layer],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.02,
        layer_norm_eps=cfg.norm_eps,
        image_size=cfg.img_size[0] if square else list(cfg.img_size),
        patch_size=cfg.patch_size[0] if square else list(cfg.patch_size),
        num_channels=cfg.in_chans,
        qkv_bias=cfg.qkv_bias,
        encoder_stride=cfg.patch_size[0],
        id2label={str(i): name for i, name in enumerate(classes)},
        label2id={name: i for i, name in enumerate(classes)},
    )
    if cfg.representation_size:
        config.update(pooler_output_size=cfg.representation_size, pooler_act="tanh")
    return out, config, hf_preprocessor(cfg)


def hf_preprocessor(cfg: Any) -> dict[str, Any]:
    """preprocessor_config.json for a model config with img_size, mean, std and crop_pct (any family)."""
    return dict(
        image_processor_type="ViTImageProcessor",  # resize only: vitkit's crop_pct is not represented
        do_resize=True,
        size={"height": cfg.img_size[0], "width": cfg.img_size[1]},
        resample=3,  # bicubic
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(cfg.mean),
        image_std=list(cfg.std),
        crop_pct=cfg.crop_pct,  # not used by ViTImageProcessor; read back by vitkit
    )
