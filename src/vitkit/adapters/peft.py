"""Hugging Face peft LoRA folders (``adapter_config.json`` + ``adapter_model.safetensors``) for a transformers
``ViTForImageClassification``, read onto the matching vitkit ViT.

peft keys look like ``base_model.model.vit.layers.{i}.attention.q_proj.lora_A.weight`` (transformers >= 5) or
``base_model.model.vit.encoder.layer.{i}.attention.attention.query.lora_A.weight`` (older), A (r, in) and
B (out, r), scaling ``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA). vitkit fuses q, k and v into one ``qkv``
layer, so their three updates become one LoRA of rank 3r: A stacked, B block-diagonal, which is the same
update exactly. LoRA on the patch projection (``embeddings.patch_embeddings.projection``, a convolution: A (r, C,
p, p), B (D, r, 1, 1)) becomes vitkit's stem LoRA on ``patch_embed.proj``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import nn

from vitkit.adapters.config import AdapterConfig
from vitkit.adapters.inject import CONFIG_ATTR, replace_module
from vitkit.adapters.modules import LoRAConv2d, LoRALinear

# (transformers >= 5 module, classic module, vitkit module in block i, slot in the fused qkv or None)
_TARGETS = [
    ("attention.q_proj", "attention.attention.query", "attn.qkv", 0),
    ("attention.k_proj", "attention.attention.key", "attn.qkv", 1),
    ("attention.v_proj", "attention.attention.value", "attn.qkv", 2),
    ("attention.o_proj", "attention.output.dense", "attn.proj", None),
    ("mlp.fc1", "intermediate.dense", "mlp.fc1", None),
    ("mlp.fc2", "output.dense", "mlp.fc2", None),
]
_MODULES = {name: (mine, slot) for new, old, mine, slot in _TARGETS for name in (new, old)}
_KEY = re.compile(r"base_model\.model\.vit\.(?:layers|encoder\.layer)\.(\d+)\.(.+)\.lora_([AB])\.weight")
_STEM_KEY = re.compile(r"base_model\.model\.vit\.embeddings\.patch_embeddings\.projection\.lora_([AB])\.weight")
_STEM = "patch_embed.proj"
_HEAD = {"base_model.model.classifier.weight": "head.weight", "base_model.model.classifier.bias": "head.bias"}


def is_peft_folder(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def _read(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    from vitkit.weights import io

    config = io.read_json(folder / "adapter_config.json")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found; save the peft model with safe_serialization=True")
    return config, io.read_safetensors(weights)[0]


def _check(config: dict, folder: Path) -> None:
    problems = [
        f"peft_type {config.get('peft_type')!r}" if config.get("peft_type") != "LORA" else "",
        "DoRA" if config.get("use_dora") else "",
        f"bias={config.get('bias')!r}" if config.get("bias", "none") != "none" else "",
        "rank_pattern/alpha_pattern" if config.get("rank_pattern") or config.get("alpha_pattern") else "",
        "fan_in_fan_out" if config.get("fan_in_fan_out") else "",
    ]
    problems = [p for p in problems if p]
    if problems:
        raise ValueError(
            f"{folder}: peft adapter uses {', '.join(problems)}, which vitkit does not read; save a plain LoRA "
            "adapter (one rank and alpha, no bias, no DoRA)"
        )


def peft_to_vitkit(folder: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor], dict]:
    """(per vitkit module path: {'A', 'B'}, head tensors, peft config) from a peft LoRA folder."""
    folder = Path(folder)
    config, tensors = _read(folder)
    _check(config, folder)
    parts: dict[tuple[str, int | None], dict[str, torch.Tensor]] = {}
    head: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key in _HEAD:
            head[_HEAD[key]] = value
            continue
        stem = _STEM_KEY.fullmatch(key)
        if stem:
            parts.setdefault((_STEM, None), {})[stem.group(1)] = value
            continue
        match = _KEY.fullmatch(key)
        if not match or match.group(2) not in _MODULES:
            raise ValueError(
                f"{folder}: key {key} is not a LoRA weight of a ViTForImageClassification encoder layer, its patch "
                "projection or its classifier; vitkit reads LoRA on the attention and MLP linear layers and the "
                "patch projection only"
            )
        target, slot = _MODULES[match.group(2)]
        parts.setdefault((f"blocks.{match.group(1)}.{target}", slot), {})[match.group(3)] = value
    return _fuse(parts), head, config


def _fuse(parts: dict[tuple[str, int | None], dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
    """One (A, B) per vitkit module; q, k, v stacked into the fused qkv as a block-diagonal LoRA."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for (path, slot), ab in parts.items():
        if slot is None:
            out[path] = ab
    for path in sorted({p for p, s in parts if s is not None}):
        slots = [parts.get((path, s)) for s in range(3)]
        ref = next(ab for ab in slots if ab is not None)
        r, d_in = ref["A"].shape
        d_out = ref["B"].shape[0]
        A = torch.zeros(3 * r, d_in, dtype=ref["A"].dtype)  # (3r, D)
        B = torch.zeros(3 * d_out, 3 * r, dtype=ref["B"].dtype)  # (3D, 3r), block-diagonal
        for s, ab in enumerate(slots):
            if ab is not None:
                A[s * r : (s + 1) * r] = ab["A"]
                B[s * d_out : (s + 1) * d_out, s * r : (s + 1) * r] = ab["B"]
        out[path] = {"A": A, "B": B}
    return out


@torch.no_grad()
def apply_peft(model: nn.Module, folder: str | Path) -> nn.Module:
    """Put a peft LoRA adapter onto ``model`` (the vitkit ViT converted from the same transformers base)."""
    modules, head, config = peft_to_vitkit(folder)
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    for p in model.parameters():
        p.requires_grad_(False)
    for path, ab in modules.items():
        layer = model.get_submodule(path)
        shape = tuple(layer.weight.shape)
        if tuple(ab["A"].shape[1:]) != shape[1:] or tuple(ab["B"].shape[:1]) != shape[:1]:
            raise ValueError(
                f"{folder}: LoRA for {path} has shapes {list(ab['A'].shape)} / {list(ab['B'].shape)}, which do not "
                f"fit the model's layer of weight shape {list(shape)}; load the base it was trained on"
            )
        kind = LoRAConv2d if isinstance(layer, nn.Conv2d) else LoRALinear
        lora = kind.wrap(layer, ab["A"].shape[0], alpha, float(config.get("lora_dropout", 0.0)))
        lora.scaling = scaling
        lora.lora_A.copy_(ab["A"])
        lora.lora_B.copy_(ab["B"].flatten(1))  # a conv's B is (out, r, 1, 1)
        replace_module(model, path, lora)
    if head:
        model.load_state_dict(head, strict=False)
    lora_mlp = any(p.endswith(("mlp.fc1", "mlp.fc2")) for p in modules)
    stem_rank = r if _STEM in modules else 0
    setattr(
        model, CONFIG_ATTR, AdapterConfig(method="lora", rank=r, alpha=alpha, lora_mlp=lora_mlp, stem_rank=stem_rank)
    )
    return model


def peft_num_classes(folder: str | Path) -> int | None:
    """The classifier size stored in the peft folder (None when it saved no classifier)."""
    _, head, _ = peft_to_vitkit(folder)
    return int(head["head.weight"].shape[0]) if "head.weight" in head else None
