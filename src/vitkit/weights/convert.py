"""Write a model in another ecosystem's format: vitkit's file, a timm state dict, or a transformers folder.

``convert_checkpoint(src, dst, to=...)`` reads anything :func:`load_pretrained` reads, so JAX or timm weights
become a folder that ``transformers.ViTForImageClassification.from_pretrained`` opens.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from vitkit.families import Write, family_of
from vitkit.weights import io
from vitkit.weights.errors import CheckpointError
from vitkit.weights.load import load_pretrained, save_pretrained

log = logging.getLogger("vitkit.weights")
TARGETS = ("vitkit", "hf", "timm")


def save_hf(model: nn.Module, folder: str | Path) -> Path:
    """A transformers ``save_pretrained`` folder: config.json, model.safetensors, preprocessor_config.json."""
    state, config, preprocessor = _writer(model, "hf")(model.state_dict(), model.cfg)
    folder = Path(folder)
    if folder.is_file():
        raise ValueError(f"{folder} is a file; the Hugging Face layout is a folder")
    folder.mkdir(parents=True, exist_ok=True)
    # Weights first and config last, so a folder with a config.json is always complete.
    io.write_safetensors(state, folder / "model.safetensors", {"format": "pt"})
    io.write_json(preprocessor, folder / "preprocessor_config.json")
    io.write_json(config, folder / "config.json")
    return folder


def save_timm(model: nn.Module, path: str | Path) -> Path:
    """A plain timm state dict: ``.pth``/``.bin`` via torch.save, anything else as safetensors."""
    state = io.plain_tensors(_writer(model, "timm")(model.state_dict(), model.cfg))
    path = Path(path)
    if path.suffix in (".pth", ".pt", ".bin"):
        return io.write_torch(state, path)
    return io.write_safetensors(state, path, {"format": "pt"})


def _writer(model: nn.Module, target: str) -> Write:
    family = family_of(model)
    writer = family.writers.get(target)
    if writer is None:
        formats = ", ".join(sorted(family.writers)) or "none"
        raise CheckpointError(
            f"the {family.name!r} family has no {target} format (it writes: {formats}); save it with "
            "save_pretrained (vitkit's format) instead"
        )
    return writer


def convert_checkpoint(
    src: str | Path, dst: str | Path, to: str = "vitkit", model: str | None = None, **overrides: Any
) -> Path:
    """Read ``src`` (any supported format) and write it to ``dst`` as ``to`` ('vitkit', 'hf' or 'timm').

    ``model`` and ``overrides`` mean what they mean for :func:`load_pretrained` (e.g. ``num_classes``).
    """
    if to not in TARGETS:
        raise ValueError(f"unknown target format {to!r}; choose one of {TARGETS}")
    net = load_pretrained(src, model=model, **overrides)
    log.info("writing %s as %s", dst, to)
    if to == "hf":
        return save_hf(net, dst)
    if to == "timm":
        return save_timm(net, dst)
    return save_pretrained(net, dst)
