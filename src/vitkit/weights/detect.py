"""Find out what a checkpoint is from its contents (magic bytes, metadata, key names), not from its name.

Reading finds the container: ``vitkit`` (safetensors whose metadata holds the config), ``vitkit_train`` (a vitkit
training checkpoint), ``state_dict`` (a bare tensor dict in a .safetensors/.pth/.bin file), ``npz``, ``hf`` (a
transformers ``save_pretrained`` folder) and ``state_dict`` with a timm hub config beside it. Which family's format
a foreign container holds (``timm``, ``jax``, ``swin_original``, ``hf_mae``, ...) is then asked of the family
descriptors' readers (:func:`identify`), so nothing here knows a family.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vitkit.families import Family, Reader, readers_for
from vitkit.weights import io
from vitkit.weights.checkpoint import Checkpoint
from vitkit.weights.errors import CheckpointError
from vitkit.weights.timm import unwrap_state_dict

CONFIG_KEY = "vitkit.config"  # safetensors metadata entry holding the config's to_dict() as JSON
FAMILY_KEY = "vitkit.family"  # ... and the config's family ("vit" when absent: files from before families)
TRAIN_FORMAT = "vitkit.train_state"  # see vitkit.train.state
OWN = ("vitkit", "vitkit_train")  # containers that carry their config: no family reader needed
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
EXPECTED = (
    "a vitkit .safetensors file, a timm state dict (.safetensors/.pth/.bin), a JAX or BiT .npz, or a folder from "
    "transformers' or timm's save_pretrained (config.json + model.safetensors or pytorch_model.bin)"
)


def detect_format(source: str | Path) -> str:
    """The format name of ``source`` (``vitkit``, ``timm``, ``jax``, ``hf``, ...); a clear error for anything else."""
    ckpt = read_checkpoint(source)
    return ckpt.format if ckpt.container in OWN else identify(ckpt)[1].format


def read_checkpoint(source: str | Path) -> Checkpoint:
    """Read ``source`` (file or folder) safely and tell its container from its contents."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} not found; expected {EXPECTED}")
    return _read_dir(path) if path.is_dir() else _read_file(path)


def identify(ckpt: Checkpoint, prefer: Family | None = None) -> tuple[Family, Reader]:
    """The family and reader of a foreign checkpoint: among the readers of its container that claim it, the
    ``prefer``red family's (a named model's), else the highest priority. Sets ``ckpt.format``.

    When the preferred family has a reader for the container but another family claims the file, the error says
    so; when nothing claims it, the preferred family's reader tries (and says what it misses).
    """
    candidates = readers_for(ckpt.container)
    if ckpt.container == "mmcv":  # an mmcv checkpoint of another kind of model: its state dict as any other
        candidates += readers_for("state_dict")
    claiming = [(f, r) for f, r in candidates if r.claims(ckpt)]
    if prefer is not None:
        own = [(f, r) for f, r in claiming if f.name == prefer.name]
        if own:
            chosen = own[0]
        elif claiming:
            other = claiming[0][0].name
            raise CheckpointError(
                f"{ckpt.path} holds {claiming[0][1].describes or other + ' weights'} (the {other!r} family), but the "
                f"named model is a {prefer.name!r} model; name a {other} model (see `vitkit models`) or leave model out"
            )
        else:
            mine = [(f, r) for f, r in candidates if f.name == prefer.name]
            if not mine:
                raise CheckpointError(f"{ckpt.path}: the {prefer.name!r} family reads no {ckpt.container} files")
            chosen = mine[0]
    elif claiming:
        chosen = claiming[0]
    else:
        raise _unclaimed(ckpt, candidates)
    ckpt.format = chosen[1].format
    return chosen


def _unclaimed(ckpt: Checkpoint, candidates: list[tuple[Family, Reader]]) -> CheckpointError:
    expected = "; ".join(sorted({r.describes for _, r in candidates if r.describes})) or EXPECTED
    if ckpt.container == "hf":
        found = f"model_type {ckpt.meta['config'].get('model_type')!r}"
    else:
        found = f"tensors with unknown names (e.g. {sorted(ckpt.tensors)[:5]})"
    return CheckpointError(f"{ckpt.path}: {found}; expected {expected}")


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
    if "architecture" in config:  # timm's push_to_hf_hub / save_for_hf layout: a state dict and its hub config
        return Checkpoint("state_dict", weights[0], tensors, {"hub_config": config})
    if "model_type" in config:  # a transformers folder; its model_type says which family reads it
        prep_path = path / "preprocessor_config.json"
        prep = io.read_json(prep_path) if prep_path.exists() else None
        return Checkpoint("hf", weights[0], tensors, {"config": config, "preprocessor": prep})
    raise CheckpointError(
        f"{config_path}: neither a transformers config (no 'model_type') nor a timm hub config (no 'architecture')"
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
        return Checkpoint("npz", path, io.read_npz(path))
    if kind == "torch":
        obj = io.read_torch(path)
        if isinstance(obj, dict) and isinstance(obj.get("meta"), dict) and isinstance(obj.get("state_dict"), dict):
            # mmcv's checkpoint layout (mmseg releases): the meta holds the config text, classes and palette
            return Checkpoint("mmcv", path, unwrap_state_dict(obj["state_dict"], str(path)), dict(obj["meta"]))
        if isinstance(obj, dict) and obj.get("format") == TRAIN_FORMAT:
            ema = obj.get("ema") or {}
            weights = ema.get("module") if isinstance(ema, dict) and ema.get("module") else obj["model"]
            meta = {"config": obj["model_config"], "family": obj.get("model_family", "vit")}
            return Checkpoint("vitkit_train", path, dict(weights), meta)
        return _classify(path, unwrap_state_dict(obj, str(path)))
    raise CheckpointError(f"{path}: unknown format (not safetensors, PyTorch, or .npz); expected {EXPECTED}")


def _classify(path: Path, tensors: dict[str, Any]) -> Checkpoint:
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in tensors):
        raise CheckpointError(
            f"{path}: Hugging Face weights without their config; pass the folder that holds this file and "
            "its config.json"
        )
    return Checkpoint("state_dict", path, tensors)
