"""Putting saved adapters back: onto a base loaded by :func:`vitkit.weights.load_pretrained`, singly or as an
ensemble. This is loading "with adapters", so it lives above both the weights and the adapters code.

:func:`load_pretrained` (the facade's ``vitkit.load_pretrained``) calls :func:`attach_adapters` with a function that
loads the base with given config overrides, so the base is built with the adapter file's head size and resolution
first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from vitkit.adapters.checkpoint import apply_adapters, base_overrides, read_adapters
from vitkit.adapters.ensemble import AdapterEnsemble
from vitkit.adapters.inject import adapter_keys
from vitkit.adapters.peft import apply_peft, is_peft_folder, peft_num_classes
from vitkit.weights import load as weights_load
from vitkit.weights.errors import CheckpointError

LoadBase = Callable[..., nn.Module]  # load_base(**config_overrides) -> model


def load_pretrained(
    source: str | Path | nn.Module,
    model: str | nn.Module | None = None,
    strict: bool = True,
    adapters: str | Path | Sequence[str | Path] | None = None,
    **overrides: Any,
) -> nn.Module:
    """:func:`vitkit.weights.load_pretrained` (any checkpoint, in the numerics that wrote it), and ``adapters``
    put onto the loaded base: a vitkit adapter file (refused when trained on another backbone), a peft LoRA
    folder, or a list of adapter files (an ensemble averaging their probabilities)."""
    if adapters is None:
        return weights_load.load_pretrained(source, model, strict, **overrides)
    return load_with_adapters(partial(weights_load.load_pretrained, source, model, strict), adapters, overrides)


def attach_adapters(load_base: LoadBase, path: str | Path, overrides: dict[str, Any] | None = None) -> nn.Module:
    """The base from ``load_base`` with the adapters in ``path`` (a vitkit adapter file or a peft folder)."""
    overrides = dict(overrides or {})
    if is_peft_folder(path):
        classes = peft_num_classes(path)
        if classes is not None:
            overrides.setdefault("num_classes", classes)
        return apply_peft(load_base(**overrides), path).eval()
    tensors, info = read_adapters(path)
    stored = base_overrides(info)
    clash = {k: (v, stored[k]) for k, v in overrides.items() if k in stored and _same(v) != _same(stored[k])}
    if clash:
        name, (want, have) = next(iter(clash.items()))
        raise ValueError(
            f"{info['path']} was trained with {name}={have}, not {want}; leave {name} out (the adapters fix it)"
        )
    model = load_base(**{**stored, **overrides})
    return apply_adapters(model, tensors, info).eval()


def _same(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value) if isinstance(value, int) else value


def load_ensemble(load_base: LoadBase, paths: Sequence[str | Path]) -> AdapterEnsemble:
    """One frozen base and several vitkit adapter files (same config and base), averaging probabilities."""
    if not paths:
        raise ValueError("an adapter ensemble needs at least one adapter file")
    read = [read_adapters(p) for p in paths]
    first = read[0][1]
    for _, info in read[1:]:
        if info["config"] != first["config"] or info["overrides"] != first["overrides"]:
            raise ValueError(
                f"{info['path']} has another adapter config or head than {first['path']}; an ensemble shares one "
                "structure (train its members with the same adapter section and classes)"
            )
        if info["base_sha256"] != first["base_sha256"]:
            raise CheckpointError(
                f"{info['path']} was trained on another base than {first['path']}; ensemble adapter sets of one "
                "backbone"
            )
    model = apply_adapters(load_base(**base_overrides(first)), *read[0])  # checks the base's hash
    keys = set(adapter_keys(model)) | set(read[0][0])
    members = [{k: v for k, v in tensors.items() if k in keys} for tensors, _ in read]
    return AdapterEnsemble(model.eval(), members)


def load_with_adapters(
    load_base: LoadBase, adapters: str | Path | Sequence[str | Path], overrides: dict[str, Any] | None = None
) -> nn.Module:
    """What ``load_pretrained(base, adapters=...)`` returns: the adapted model for one file or peft folder, an
    :class:`AdapterEnsemble` for a list of vitkit adapter files."""
    if isinstance(adapters, (list, tuple)):
        if overrides:
            raise ValueError(f"overrides {sorted(overrides)} do not apply to an adapter ensemble; pass none")
        return load_ensemble(load_base, adapters)
    return attach_adapters(load_base, adapters, overrides)


def write_merged(load_base: LoadBase, adapters: str | Path, out: str | Path) -> tuple[Path, float]:
    """Base + LoRA adapters folded into one plain checkpoint at ``out`` (``vitkit export --merge-adapters``);
    returns (path, max |merged - adapted| logits on a seeded batch), checked by reloading the written file."""
    import torch

    from vitkit.adapters.inject import merge_adapters

    model = attach_adapters(load_base, adapters)
    cfg = model.cfg
    x = torch.randn(2, cfg.in_chans, *cfg.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
        path = weights_load.save_pretrained(merge_adapters(model), out)
        diff = float((weights_load.load_pretrained(path)(x) - expected).abs().max())
    return path, diff
