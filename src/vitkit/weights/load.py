"""``load_pretrained`` and ``save_pretrained``: the chain read -> convert -> adapt -> load, each step pure.

1. :func:`~vitkit.weights.detect.read_checkpoint` reads the file safely and tells its format from its contents;
2. the format's converter turns arrays into a vitkit state dict and a :class:`ViTConfig` (no model involved);
3. :func:`~vitkit.weights.adapt.adapt_state_dict` resamples position embeddings / drops the head for the
   requested ``img_size`` / ``num_classes``;
4. :func:`load_state_dict` loads it, listing every key that does not fit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitkit.config import ModelConfig, ViTConfig, config_from_dict
from vitkit.weights import io
from vitkit.weights.adapt import HEAD_PREFIXES, PRE_LOGITS_PREFIX, adapt_state_dict, head_changed
from vitkit.weights.bit import convert_bit, convert_timm_resnetv2, is_resnetv2_state
from vitkit.weights.detect import CONFIG_KEY, FAMILY_KEY, Checkpoint, read_checkpoint
from vitkit.weights.errors import CheckpointError, StateDictMismatchError
from vitkit.weights.hf import convert_hf
from vitkit.weights.hub import download, is_hub_name
from vitkit.weights.jax import convert_jax
from vitkit.weights.mae import convert_hf_mae, convert_official, take_encoder, wants_encoder
from vitkit.weights.swin import convert_hf_swin, convert_timm_swin, is_swin_layout
from vitkit.weights.timm import convert_timm

log = logging.getLogger("vitkit.weights")
FORMAT_VERSION = "1"


# ---------------------------------------------------------------------------------------------- loading
@dataclass
class LoadReport:
    """How a state dict fitted a model: keys with other shapes, keys the model lacks, keys the file lacks."""

    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.unexpected)

    def describe(self) -> str:
        lines = [f"  {k}: model expects {list(want)}, checkpoint has {list(got)}" for k, want, got in self.mismatched]
        if self.missing:
            lines.append(f"  missing from the checkpoint ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"  not in the model ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        return "\n".join(lines)


def load_state_dict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    strict: bool = True,
    source: str = "checkpoint",
    fresh: tuple[str, ...] = (),
) -> LoadReport:
    """Copy ``state`` into ``model``; with ``strict`` any difference raises, else what fits loads and the rest is
    logged and returned. Keys starting with a ``fresh`` prefix (a new head) may be missing."""
    own = model.state_dict()
    report = LoadReport(
        mismatched=[
            (k, tuple(own[k].shape), tuple(v.shape)) for k, v in state.items() if k in own and own[k].shape != v.shape
        ],
        missing=sorted(k for k in own if k not in state and not k.startswith(fresh)),
        unexpected=sorted(k for k in state if k not in own),
    )
    if strict and not report.ok:
        raise StateDictMismatchError(
            f"{source} does not fit the model:\n{report.describe()}\nload with strict=False to keep what fits, or "
            "build the model to match the checkpoint",
            report,
        )
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    if not report.ok:
        log.warning("%s loaded partially (strict=False):\n%s", source, report.describe())
    return report


def _registry_config(name: str) -> ModelConfig:
    from vitkit.registry import get_config

    return get_config(name)


def convert_to_vitkit(
    ckpt: Checkpoint, model: str | None = None, num_heads: int | None = None
) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """The format's converter: (vitkit state dict, config as written). ``model`` names a registry entry that
    supplies what the format does not store (timm: heads and preprocessing; JAX: preprocessing)."""
    source = str(ckpt.path)
    if ckpt.format in ("vitkit", "vitkit_train"):
        if model is not None:
            log.warning("%s carries its own config; model=%r is ignored", source, model)
        try:
            cfg = config_from_dict(ckpt.meta["config"], ckpt.meta.get("family", "vit"))
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: the stored model config is invalid ({err})") from None
        return dict(ckpt.tensors), cfg
    if ckpt.format in _SELF_DESCRIBED:  # a config.json travels with the weights
        if model is not None:
            log.warning("%s carries its own config.json; model=%r is ignored", source, model)
        return _SELF_DESCRIBED[ckpt.format](ckpt.tensors, ckpt.meta["config"], ckpt.meta.get("preprocessor"), source)
    base = _registry_config(model) if model else None
    if ckpt.format in _NAMED_BASE:  # arrays only: a named model supplies heads / preprocessing where given
        return _NAMED_BASE[ckpt.format](ckpt.tensors, base, source)
    if ckpt.format == "timm":
        base = base or _hub_base(ckpt.meta.get("hub_config"), source)
        if is_resnetv2_state(ckpt.tensors):
            return convert_timm_resnetv2(ckpt.tensors, base, source)
        if is_swin_layout(ckpt.tensors) or getattr(base, "family", None) == "swin":
            return convert_timm_swin(ckpt.tensors, base, source)
        return convert_timm(ckpt.tensors, base, num_heads, source)
    raise CheckpointError(f"{source}: no converter for format {ckpt.format!r}")


# format -> converter(tensors, config.json, preprocessor_config.json, source): folders that describe themselves.
_SELF_DESCRIBED = {"hf": convert_hf, "hf_swin": convert_hf_swin, "hf_mae": convert_hf_mae}
# format -> converter(tensors, named registry config or None, source): arrays whose layout fixes the rest.
_NAMED_BASE = {
    "jax": convert_jax,
    "bit": convert_bit,
    "swin_original": convert_timm_swin,  # microsoft/Swin-Transformer's release (and timm < 0.9)
    "mae": convert_official,  # facebookresearch/mae; heads from the named model or the registry's MAE
}


def _hub_base(hub: dict[str, Any] | None, source: str) -> ViTConfig | None:
    """The registry config named by a timm hub config.json, with its preprocessing."""
    if not hub:
        return None
    from vitkit.registry import MODEL_CONFIGS

    name = str(hub["architecture"]).split(".")[0]
    if name not in MODEL_CONFIGS:
        raise CheckpointError(f"{source}: timm architecture {name!r} is not in vitkit's registry (see `vitkit models`)")
    pre = hub.get("pretrained_cfg") or hub  # older hub configs keep these at the top level
    changes: dict[str, Any] = {k: tuple(pre[k]) for k in ("mean", "std") if k in pre}
    if "crop_pct" in pre:
        changes["crop_pct"] = float(pre["crop_pct"])
    return MODEL_CONFIGS[name].replace(**changes)


def load_pretrained(
    source: str | Path | nn.Module,
    model: str | nn.Module | None = None,
    strict: bool = True,
    adapters: str | Path | list[str | Path] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Load any supported checkpoint into a vitkit model (in eval mode), in the numerics of the code that wrote it.

    ``source`` is a file or folder (vitkit, timm, Hugging Face or JAX; detected from its contents), a hub name
    (``hf-hub:google/vit-base-patch16-224``, ``timm/vit_base_patch16_224.augreg2_in21k_ft_in1k``) or a built
    model. ``model`` is a registry name supplying what the weights cannot fix (a timm file's number of heads),
    or a built model to load into. ``overrides`` are ViTConfig fields: ``num_classes`` replaces the head with a
    zero-initialised one, ``img_size`` resamples the position embeddings in 2D, others (``drop_path_rate``, ...)
    change the built model. With ``strict=False`` weights that do not fit are reported instead of raising.
    ``adapters`` puts saved adapters onto the loaded base (a vitkit adapter file, refused when trained on another
    backbone, or a peft LoRA folder; a list of adapter files gives an ensemble averaging their probabilities).
    """
    if adapters is not None:
        from functools import partial

        from vitkit.adapters.loading import load_with_adapters

        return load_with_adapters(partial(load_pretrained, source, model, strict), adapters, overrides)
    if isinstance(source, nn.Module):
        if not isinstance(getattr(source, "cfg", None), ModelConfig):
            raise TypeError(f"source must be a checkpoint path or a vitkit model, got {type(source).__name__}")
        state, cfg, where = source.state_dict(), source.cfg, type(source).__name__
    else:
        if is_hub_name(source):  # hf-hub:ORG/NAME or timm/NAME: through the Hugging Face cache (weights/hub.py)
            source = download(source)
        ckpt = read_checkpoint(source)
        name = model if isinstance(model, str) else None
        state, cfg = convert_to_vitkit(ckpt, name, overrides.get("num_heads"))
        where = f"{ckpt.path} ({ckpt.format})"
    if wants_encoder(cfg, overrides, model):  # a whole MAE where a ViT is expected: its encoder, with a note
        state, cfg = take_encoder(state, cfg, where)
    if isinstance(model, str) and _registry_config(model).family != cfg.family:
        raise CheckpointError(
            f"{where} holds a {cfg.family!r} model, but model={model!r} is a {_registry_config(model).family!r} "
            f"model; name a {cfg.family} model (see `vitkit models`) or leave model out"
        )
    if isinstance(model, nn.Module):
        if overrides:
            raise ValueError(f"overrides {sorted(overrides)} apply when vitkit builds the model; got a built one")
        target_cfg, net = model.cfg, model
    else:
        target_cfg = cfg.replace(**overrides) if overrides else cfg
        if head_changed(cfg, target_cfg) and hasattr(target_cfg, "zero_head"):
            target_cfg = target_cfg.replace(zero_head=True)  # paper Sec. 3.2: a zero-initialised new head
        net = target_cfg.build()
    fresh = (*HEAD_PREFIXES, PRE_LOGITS_PREFIX) if head_changed(cfg, target_cfg) else ()
    load_state_dict(net, adapt_state_dict(state, cfg, target_cfg), strict=strict, source=where, fresh=fresh)
    log.info("loaded %s", where)
    return net.eval()


# ---------------------------------------------------------------------------------------------- saving
def save_pretrained(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` as one ``.safetensors`` file whose metadata carries its config, so that
    ``load_pretrained(path)`` needs nothing else. A folder ``path`` gets ``model.safetensors`` inside."""
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"save_pretrained expects a vitkit model (with a config .cfg), got {type(model).__name__}")
    heads = getattr(model, "num_classes", None)  # reset_classifier changes the head, never the model's config
    if heads is not None and getattr(cfg, "num_classes", heads) != heads:
        cfg = cfg.replace(num_classes=heads)
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    try:
        config_json = json.dumps(cfg.to_dict(), sort_keys=True)
    except TypeError as err:
        raise ValueError(f"the model config does not serialise to JSON ({err}); keep cfg.extra to plain data") from None
    from vitkit import __version__

    metadata = {"format": "pt", CONFIG_KEY: config_json, FAMILY_KEY: cfg.family, "vitkit.version": __version__,
                "vitkit.format": FORMAT_VERSION}  # fmt: skip
    return io.write_safetensors(model.state_dict(), path, metadata)


def log_progress(stream: Any = None) -> None:
    """Print vitkit.weights' step-by-step log lines (reading, resampling, writing, checking) to stderr."""
    if not any(getattr(h, "_vitkit_progress", False) for h in log.handlers):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._vitkit_progress = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.INFO)
