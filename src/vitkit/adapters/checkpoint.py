"""Adapter files: the adapter and head weights alone, tagged with the frozen backbone they were trained on.

A file is safetensors with metadata ``vitkit.adapter`` (the :class:`AdapterConfig`), ``vitkit.base_sha256``
(:func:`backbone_hash` of the base it was trained on), ``vitkit.base_overrides`` (the config changes made to
the base: classes, resolution) and ``vitkit.classes``. Loading onto a backbone with another hash is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitkit.adapters.config import AdapterConfig
from vitkit.adapters.inject import CONFIG_ATTR, adapter_keys, add_adapters, lora_layers, set_merged

ADAPTER_KEY = "vitkit.adapter"
HASH_KEY = "vitkit.base_sha256"
OVERRIDES_KEY = "vitkit.base_overrides"
CLASSES_KEY = "vitkit.classes"
_OVERRIDE_FIELDS = ("num_classes", "img_size")  # base changes an adapter set needs to be put back


def _config_of(model: nn.Module) -> AdapterConfig:
    cfg = getattr(model, CONFIG_ATTR, None)
    if cfg is None:
        raise ValueError("the model has no adapters; add them with vitkit.adapters.add_adapters(model, cfg)")
    return cfg


def _own_keys(model: nn.Module, cfg: AdapterConfig) -> list[str]:
    """Adapter keys plus the base keys that trained (the head)."""
    heads = [k for k in model.state_dict() if k.startswith(cfg.trainable)]
    return sorted({*adapter_keys(model), *heads})


@contextmanager
def unmerged(model: nn.Module) -> Iterator[None]:
    """LoRA taken out of the weights for the duration (merged layers are merged again afterwards)."""
    merged = [layer for _, layer in lora_layers(model) if layer.merged]
    set_merged(model, False)
    try:
        yield
    finally:
        for layer in merged:
            layer.merge()


def backbone_hash(model: nn.Module, exclude: list[str] | tuple[str, ...] = ()) -> str:
    """sha256 over the frozen tensors (names, dtypes, shapes and bytes, sorted by name); LoRA is taken out
    first so a merged model hashes as its base. ``exclude`` lists keys that are not part of the backbone."""
    digest = hashlib.sha256()
    skip = set(exclude)
    with unmerged(model):
        for name, tensor in sorted(model.state_dict().items()):
            if name in skip:
                continue
            t = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes, any dtype
    return digest.hexdigest()


def save_adapters(model: nn.Module, path: str | Path) -> Path:
    """Write the adapter and head weights of ``model`` (a folder gets ``adapters.safetensors``)."""
    from vitkit.weights import io

    cfg = _config_of(model)
    keys = _own_keys(model, cfg)
    path = Path(path)
    if path.is_dir():
        path = path / "adapters.safetensors"
    with unmerged(model):  # store A and B; the hash sees the base weights
        state = {k: v.clone() for k, v in model.state_dict().items() if k in keys}
        base_hash = backbone_hash(model, exclude=keys)
    mcfg = getattr(model, "cfg", None)
    overrides = {k: _plain(getattr(mcfg, k)) for k in _OVERRIDE_FIELDS if hasattr(mcfg, k)}
    classes = list((getattr(mcfg, "extra", None) or {}).get("classes") or [])
    metadata = {
        "format": "pt",
        ADAPTER_KEY: json.dumps(cfg.to_dict(), sort_keys=True),
        HASH_KEY: base_hash,
        OVERRIDES_KEY: json.dumps(overrides, sort_keys=True),
        CLASSES_KEY: json.dumps(classes),
    }
    return io.write_safetensors(state, path, metadata)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def read_adapters(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata with the config, base hash, overrides and classes decoded)."""
    from vitkit.weights import io
    from vitkit.weights.errors import CheckpointError

    path = Path(path)
    if path.is_dir():
        path = path / "adapters.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"adapter file {path} not found")
    tensors, meta = io.read_safetensors(path)
    if ADAPTER_KEY not in meta:
        raise CheckpointError(
            f"{path} is not a vitkit adapter file (no {ADAPTER_KEY} metadata); write one with "
            "vitkit.adapters.save_adapters, or pass a peft folder (adapter_config.json)"
        )
    info = {
        "config": AdapterConfig.from_dict(json.loads(meta[ADAPTER_KEY])),
        "base_sha256": meta.get(HASH_KEY, ""),
        "overrides": json.loads(meta.get(OVERRIDES_KEY, "{}")),
        "classes": json.loads(meta.get(CLASSES_KEY, "[]")),
        "path": str(path),
    }
    return tensors, info


def apply_adapters(model: nn.Module, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> nn.Module:
    """Add the stored adapters to ``model`` (a freshly loaded base) and load their weights, after checking that
    the base is the one they were trained on."""
    from vitkit.weights.errors import CheckpointError

    cfg = info["config"]
    add_adapters(model, cfg)
    keys = _own_keys(model, cfg)
    found = backbone_hash(model, exclude=keys)
    if info["base_sha256"] and found != info["base_sha256"]:
        raise CheckpointError(
            f"{info['path']} was trained on another base (backbone sha256 {info['base_sha256'][:12]}..., this one "
            f"is {found[:12]}...); load it onto the checkpoint it was trained from"
        )
    missing = sorted(set(keys) - set(tensors))
    unexpected = sorted(set(tensors) - set(keys))
    if missing or unexpected:
        raise CheckpointError(
            f"{info['path']} does not fit the adapted model: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "it was written for another architecture"
        )
    model.load_state_dict(tensors, strict=False)
    if info["classes"] and hasattr(model, "cfg"):
        model.cfg = model.cfg.replace(extra={**model.cfg.extra, "classes": info["classes"]})
    return model


def base_overrides(info: dict[str, Any]) -> dict[str, Any]:
    """Config changes to make when loading the base, so its head and grid match the adapter file's."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in info["overrides"].items()}
