"""Safe reading and atomic writing of weight files.

Reading never runs pickled code: ``torch.load(weights_only=True)`` and ``numpy.load(allow_pickle=False)``; a
file that needs more is refused with :class:`UnsafeCheckpointError`. Damaged files (truncated downloads,
interrupted saves) raise :class:`CheckpointError` naming the file. Writing goes to a temporary file in the
target folder and is renamed into place, so an interrupted save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitkit.utils.files import atomic_path
from vitkit.weights.errors import CheckpointError, UnsafeCheckpointError

_DAMAGED = "the file is truncated or corrupt; download or save it again"


# ---------------------------------------------------------------------------------------------- sniffing
def sniff(path: Path) -> str:
    """The container of a file from its first bytes: 'safetensors', 'npz', 'torch' or 'unknown'."""
    with open(path, "rb") as f:
        head = f.read(16)
    size = path.stat().st_size
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 8 + header_len <= size:
            return "safetensors"
        if head[8:9] == b"{":  # a safetensors header that claims more bytes than the file has
            raise CheckpointError(f"{path}: safetensors header runs past the end of the file; {_DAMAGED}")
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise CheckpointError(f"{path}: damaged zip archive ({err}); {_DAMAGED}") from None
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        return "unknown"
    if head[:1] == b"\x80":  # pickle protocol >= 2: torch's legacy (pre-1.6) serialisation
        return "torch"
    return "unknown"


# ---------------------------------------------------------------------------------------------- reading
def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own SafetensorError for every kind of damage
        raise CheckpointError(f"{path}: cannot read as safetensors ({err}); {_DAMAGED}") from None
    return tensors, metadata


def safetensors_metadata(path: Path) -> dict[str, str]:
    """Only the metadata of a safetensors file (cheap: reads the header)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:
        raise CheckpointError(f"{path}: cannot read as safetensors ({err}); {_DAMAGED}") from None


def read_torch(path: Path) -> Any:
    """A ``torch.save`` file holding only tensors and plain containers (``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():  # e.g. "pickle data was truncated"
            raise CheckpointError(f"{path}: cannot read as a PyTorch file ({err}); {_DAMAGED}") from None
        raise UnsafeCheckpointError(
            f"{path}: refusing to unpickle it: the file holds Python objects other than tensors and plain "
            f"containers, and loading it would run code from the file ({str(err).splitlines()[0]}). If you trust "
            "its origin, re-save just the state dict (torch.save(model.state_dict(), ...)) or convert it to "
            "safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: cannot read as a PyTorch file ({err}); {_DAMAGED}") from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a ``.npz`` file (``allow_pickle=False``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise UnsafeCheckpointError(
                f"{path}: refusing to load object arrays (they are pickled Python objects); a JAX/Flax checkpoint "
                "holds only numeric arrays"
            ) from None
        raise CheckpointError(f"{path}: cannot read as .npz ({err}); {_DAMAGED}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: cannot read as .npz ({err}); {_DAMAGED}") from None


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err}); expected a model config file") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------------- writing
def _write_with(path: str | Path, write: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def plain_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies, as safetensors requires."""
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def write_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    tensors = plain_tensors(state)
    return _write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def write_torch(obj: Any, path: str | Path) -> Path:
    return _write_with(path, lambda tmp: torch.save(obj, tmp))


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return _write_with(path, lambda tmp: tmp.write_text(text))
