"""Find out what a checkpoint is from its contents (magic bytes, metadata, key names), not from its name.

Formats: ``vitkit`` (safetensors whose metadata holds the config), ``vitkit_train`` (a vitkit training
checkpoint), ``timm`` (a state dict with timm's key names, as a file or a hub folder), ``hf`` (a transformers
``save_pretrained`` folder) and ``jax`` (a vit_jax / big_vision ``.npz``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitkit.weights import io
from vitkit.weights.bit import is_bit_npz, is_resnetv2_state
from vitkit.weights.errors import CheckpointError
from vitkit.weights.hf import MODEL_TYPES
from vitkit.weights.jax import find_prefix
from vitkit.weights.mae import HF_MODEL_TYPE as HF_MAE_TYPE
from vitkit.weights.mae import is_mae_layout
from vitkit.weights.swin import HF_MODEL_TYPE as HF_SWIN_TYPE
from vitkit.weights.swin import is_swin_layout, swin_format
from vitkit.weights.timm import is_timm_layout, unwrap_state_dict

CONFIG_KEY = "vitkit.config"  # safetensors metadata entry holding the config's to_dict() as JSON
FAMILY_KEY = "vitkit.family"  # ... and the config's family ("vit" when absent: files from before families)
TRAIN_FORMAT = "vitkit.train_state"  # see vitkit.train.state
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
EXPECTED = (
    "a vitkit .safetensors file, a timm state dict (.safetensors/.pth/.bin), a JAX or BiT .npz, or a folder from "
    "transformers' or timm's save_pretrained (config.json + model.safetensors or pytorch_model.bin)"
)


@dataclass
class Checkpoint:
    """What was read: the format, the weights file, its arrays as stored, and format-specific metadata."""

    format: str
    path: Path
    tensors: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def detect_format(source: str | Path) -> str:
    """The format name of ``source`` (see the module docstring); raises a clear error for anything else."""
    return read_checkpoint(source).format


def read_checkpoint(source: str | Path) -> Checkpoint:
    """Read ``source`` (file or folder) safely and tell its format from its contents."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found; expected {EXPECTED}")
    return _read_dir(path) if path.is_dir() else _read_file(path)


def _read_dir(path: Path) -> Checkpoint:
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        raise CheckpointError(f"{path}: the folder is empty; expected {EXPECTED}")
    weights = _weight_files(path)
    config_path = path / "config.json"
    if not config_path.exists():
        if len(weights) == 1:  # e.g. a vitkit run folder's model.safetensors, or a bare state dict
            return _read_file(weights[0])
        raise CheckpointError(
            f"{path}: no config.json or model.safetensors (found {entries[:10]}); expected {EXPECTED}"
        )
    config = io.read_json(config_path)
    if not weights:
        raise CheckpointError(f"{path}: config.json but no {' or '.join(WEIGHT_FILES)} next to it")
    tensors: dict[str, Any] = {}
    for file in weights:
        tensors.update(_read_tensors(file))
    if config.get("model_type") in (*MODEL_TYPES, HF_MAE_TYPE, HF_SWIN_TYPE):
        prep_path = path / "preprocessor_config.json"
        prep = io.read_json(prep_path) if prep_path.exists() else None
        kind = "hf_mae" if config["model_type"] == HF_MAE_TYPE else "hf"  # ViTMAEForPreTraining: weights/mae.py
        kind = "hf_swin" if config["model_type"] == HF_SWIN_TYPE else kind  # transformers' Swin: weights/swin.py
        return Checkpoint(kind, weights[0], tensors, {"config": config, "preprocessor": prep})
    if "architecture" in config:  # timm's push_to_hf_hub / save_for_hf layout
        return Checkpoint("timm", weights[0], tensors, {"hub_config": config})
    raise CheckpointError(
        f"{config_path}: neither a transformers ViT/DeiT config (model_type {config.get('model_type')!r}, expected "
        f"one of {MODEL_TYPES}) nor a timm hub config (an 'architecture' entry)"
    )


def _weight_files(folder: Path) -> list[Path]:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    for name in INDEX_FILES:  # sharded save_pretrained output
        if (folder / name).is_file():
            shards = sorted(set(io.read_json(folder / name).get("weight_map", {}).values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing or not shards:
                raise CheckpointError(f"{folder / name}: shard files missing: {missing or 'none listed'}")
            return [folder / s for s in shards]
    return []


def _read_tensors(file: Path) -> dict[str, Any]:
    kind = _sniff(file)
    if kind == "safetensors":
        return io.read_safetensors(file)[0]
    if kind == "torch":
        return unwrap_state_dict(io.read_torch(file), str(file))
    raise CheckpointError(f"{file}: not a safetensors or PyTorch weights file")


def _sniff(path: Path) -> str:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty; expected {EXPECTED}")
    return io.sniff(path)


def _read_file(path: Path) -> Checkpoint:
    kind = _sniff(path)
    if kind == "safetensors":
        tensors, metadata = io.read_safetensors(path)
        if CONFIG_KEY in metadata:
            try:
                config = json.loads(metadata[CONFIG_KEY])
            except json.JSONDecodeError as err:
                raise CheckpointError(f"{path}: the '{CONFIG_KEY}' metadata is not valid JSON ({err})") from None
            return Checkpoint("vitkit", path, tensors, {"config": config, "family": metadata.get(FAMILY_KEY, "vit")})
        return _classify(path, tensors)
    if kind == "npz":
        arrays = io.read_npz(path)
        if is_bit_npz(arrays):  # an original BiT ResNet (big_transfer)
            return Checkpoint("bit", path, arrays)
        if find_prefix(arrays) is None:
            raise CheckpointError(
                f"{path}: a .npz without 'embedding/kernel'; expected a vit_jax / big_vision ViT checkpoint "
                f"(found {sorted(arrays)[:6]})"
            )
        return Checkpoint("jax", path, arrays)
    if kind == "torch":
        obj = io.read_torch(path)
        if isinstance(obj, dict) and obj.get("format") == TRAIN_FORMAT:
            ema = obj.get("ema") or {}
            weights = ema.get("module") if isinstance(ema, dict) and ema.get("module") else obj["model"]
            meta = {"config": obj["model_config"], "family": obj.get("model_family", "vit")}
            return Checkpoint("vitkit_train", path, dict(weights), meta)
        return _classify(path, unwrap_state_dict(obj, str(path)))
    raise CheckpointError(f"{path}: unknown format (not safetensors, PyTorch, or .npz); expected {EXPECTED}")


def _classify(path: Path, tensors: dict[str, Any]) -> Checkpoint:
    if is_mae_layout(tensors):  # facebookresearch/mae pre-training weights (encoder + decoder)
        return Checkpoint("mae", path, tensors)
    if is_timm_layout(tensors) or is_resnetv2_state(tensors):
        return Checkpoint("timm", path, tensors)
    if is_swin_layout(tensors):  # timm's Swin, or the original release's layout (weights/swin.py)
        return Checkpoint(swin_format(tensors), path, tensors)
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in tensors):
        raise CheckpointError(
            f"{path}: Hugging Face ViT weights without their config; pass the folder that holds this file and "
            "its config.json"
        )
    raise CheckpointError(
        f"{path}: tensors with unknown names (e.g. {sorted(tensors)[:5]}); expected timm's ViT layout "
        "('patch_embed.proj.weight', 'blocks.0.…'), vitkit's own file, or a transformers folder"
    )
