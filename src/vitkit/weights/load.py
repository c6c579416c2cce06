"""``load_pretrained`` and ``save_pretrained``: the chain read -> convert -> adapt -> load, each step pure.

1. :func:`~vitkit.weights.detect.read_checkpoint` reads the file safely and tells its container from its contents;
2. the family whose reader claims it (:func:`~vitkit.weights.detect.identify`) converts the arrays into a vitkit
   state dict and config (no model involved); a checkpoint wanted as another family becomes one when its family
   says how (an MAE's encoder as a ViT);
3. the family's shape adaptation (:func:`vitkit.families.adapt_state_dict`) resamples position or bias tables and
   drops the head for the requested ``img_size`` / ``num_classes``;
4. :func:`load_state_dict` loads it, listing every key that does not fit.

Adapters are put onto a loaded base one level up (``vitkit.adapters.loading.load_pretrained``, the facade's).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitkit.config import ModelConfig
from vitkit.config.named import MODEL_CONFIGS, get_config
from vitkit.families import Family, adapt_state_dict, config_from_dict, family_of, get_family
from vitkit.utils.progress import CurrentStreamHandler
from vitkit.version import __version__
from vitkit.weights import io
from vitkit.weights.adapt import head_changed
from vitkit.weights.checkpoint import Checkpoint
from vitkit.weights.detect import CONFIG_KEY, FAMILY_KEY, OWN, identify, read_checkpoint
from vitkit.weights.errors import CheckpointError, StateDictMismatchError
from vitkit.weights.hub import download, is_hub_name, timm_repo

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


def convert_to_vitkit(
    ckpt: Checkpoint, model: str | None = None, num_heads: int | None = None
) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """The checkpoint's weights as a vitkit state dict and its config as written. ``model`` names a registry entry
    that supplies what the format does not store (timm: heads and preprocessing; JAX: preprocessing)."""
    source = str(ckpt.path)
    if ckpt.container in OWN:
        if model is not None:
            log.warning("%s carries its own config; model=%r is ignored", source, model)
        try:
            cfg = config_from_dict(ckpt.meta["config"], ckpt.meta.get("family", "vit"))
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: the stored model config is invalid ({err})") from None
        return dict(ckpt.tensors), cfg
    if ckpt.container == "hf" and model is not None:  # a config.json travels with the weights
        log.warning("%s carries its own config.json; model=%r is ignored", source, model)
        model = None
    base = get_config(model) if model else _hub_base(ckpt.meta.get("hub_config"), source)
    family, reader = identify(ckpt, family_of(base) if base is not None else None)
    return reader.convert(ckpt, base, {"num_heads": num_heads})


def _hub_base(hub: dict[str, Any] | None, source: str) -> ModelConfig | None:
    """The registry config named by a timm hub config.json, with its preprocessing."""
    if not hub:
        return None
    name = str(hub["architecture"]).split(".")[0]
    if name not in MODEL_CONFIGS:
        raise CheckpointError(f"{source}: timm architecture {name!r} is not in vitkit's registry (see `vitkit models`)")
    pre = hub.get("pretrained_cfg") or hub  # older hub configs keep these at the top level
    changes: dict[str, Any] = {k: tuple(pre[k]) for k in ("mean", "std") if k in pre}
    if "crop_pct" in pre:
        changes["crop_pct"] = float(pre["crop_pct"])
    return MODEL_CONFIGS[name].replace(**changes)


def wanted_family(have: Family, model: str | nn.Module | None, overrides: dict[str, Any]) -> Family:
    """The family the caller wants: that of ``model`` (a registry name or a built model), else one that ``have``
    can become whose config has every override field (an MAE loaded with ``num_classes``: a ViT), else ``have``."""
    if isinstance(model, str):
        return family_of(get_config(model))
    if isinstance(model, nn.Module):
        return family_of(model)
    fields = set(overrides)
    if fields <= _fields(have.config_class):
        return have
    for name in have.derived:
        target = get_family(name)
        if fields <= _fields(target.config_class):
            return target
    return have


def _fields(cls: type) -> set[str]:
    return set(getattr(cls, "__dataclass_fields__", {}))


def as_family(
    state: dict[str, torch.Tensor], cfg: ModelConfig, target: Family, where: str
) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """Weights of ``cfg``'s family as ``target``'s, where the source family knows how; else a one-line error."""
    have = family_of(cfg)
    if have.name == target.name:
        return state, cfg
    derive = have.derived.get(target.name)
    if derive is None:
        raise CheckpointError(
            f"{where} holds a {have.name!r} model, but a {target.name!r} model is wanted; name a {have.name} model "
            "(see `vitkit models`) or leave model out"
        )
    return derive(state, cfg, where)


def load_pretrained(
    source: str | Path | nn.Module,
    model: str | nn.Module | None = None,
    strict: bool = True,
    **overrides: Any,
) -> nn.Module:
    """Load any supported checkpoint into a vitkit model (in eval mode), in the numerics of the code that wrote it.

    ``source`` is a file or folder (vitkit, timm, Hugging Face or JAX; detected from its contents), a hub name
    (``hf-hub:google/vit-base-patch16-224``, ``timm/vit_base_patch16_224.augreg2_in21k_ft_in1k``) or a built
    model. ``model`` is a registry name supplying what the weights cannot fix (a timm file's number of heads),
    or a built model to load into. ``overrides`` are ViTConfig fields: ``num_classes`` replaces the head with a
    zero-initialised one, ``img_size`` resamples the position embeddings in 2D, others (``drop_path_rate``, ...)
    change the built model. With ``strict=False`` weights that do not fit are reported instead of raising.
    """
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
    state, cfg = as_family(state, cfg, wanted_family(family_of(cfg), model, overrides), where)
    if isinstance(model, nn.Module):
        if overrides:
            raise ValueError(f"overrides {sorted(overrides)} apply when vitkit builds the model; got a built one")
        target_cfg, net = model.cfg, model
    else:
        target_cfg = cfg.replace(**overrides) if overrides else cfg
        if head_changed(cfg, target_cfg) and hasattr(target_cfg, "zero_head"):
            target_cfg = target_cfg.replace(zero_head=True)  # paper Sec. 3.2: a zero-initialised new head
        net = family_of(target_cfg).build(target_cfg)
    fresh = family_of(target_cfg).head_prefixes if head_changed(cfg, target_cfg) else ()
    load_state_dict(net, adapt_state_dict(state, cfg, target_cfg), strict=strict, source=where, fresh=fresh)
    log.info("loaded %s", where)
    return net.eval()


def load_hub_model(name: str, **overrides):
    """``create_model(name, pretrained=True)``: the registry model with timm's weights for it from the hub;
    ``overrides`` (``num_classes``, ``img_size``, ...) adapt it as in ``load_pretrained``. The hub's config.json
    names the architecture and carries the weights' preprocessing (mean, std, crop), which win over the registry's.
    """
    return load_pretrained(download(timm_repo(name)), **overrides)


def init_from(model: nn.Module, source: str | Path | nn.Module) -> LoadReport:
    """Start ``model``'s backbone from a classifier's weights (any format ``load_pretrained`` reads, or a built
    model), as its family says: a ViT-Adapter takes a plain ViT's (DeiT, AugReg/JAX, timm, an MAE encoder) with the
    position table resampled, a segmentor passes them to its backbone. What the source does not give (the
    adapter's own parts, necks and heads) keeps its initialisation; anything given that does not fit raises."""
    family = family_of(model)
    if family.init_from is None:
        raise CheckpointError(f"a {family.name!r} model cannot start from another model's weights; load its own")
    classifier = source if isinstance(source, nn.Module) else load_pretrained(source, num_classes=0)
    state, cfg = classifier.state_dict(), classifier.cfg
    where = type(source).__name__ if isinstance(source, nn.Module) else str(source)
    for name in family_of(cfg).derived:  # an MAE: its encoder, the ViT the paper fine-tunes
        if get_family(name).task == "classification":
            state, cfg = as_family(state, cfg, get_family(name), where)
    taken = family.init_from(state, cfg, model.cfg)
    fresh = tuple(k for k in model.state_dict() if k not in taken)  # the parts the source does not have
    report = load_state_dict(model, taken, strict=True, source=where, fresh=fresh)
    log.info("started %d tensors from %s; %d keep their initialisation", len(taken), where, len(fresh))
    return report


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
    metadata = {"format": "pt", CONFIG_KEY: config_json, FAMILY_KEY: cfg.family, "vitkit.version": __version__,
                "vitkit.format": FORMAT_VERSION}  # fmt: skip
    return io.write_safetensors(model.state_dict(), path, metadata)


def log_progress(stream: Any = None) -> None:
    """Print vitkit.weights' step-by-step log lines (reading, resampling, writing, checking) to ``stream``, by
    default to whatever ``sys.stderr`` is when each line is written."""
    if not any(getattr(h, "_vitkit_progress", False) for h in log.handlers):
        handler = logging.StreamHandler(stream) if stream is not None else CurrentStreamHandler("stderr")
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._vitkit_progress = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.INFO)
