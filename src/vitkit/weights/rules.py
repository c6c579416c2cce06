"""A tiny engine for table-driven converters: each rule names one vitkit tensor, its source arrays, and the pure
function between them (and back, for writers). Converters are then tables, not code paths.

Source keys a table does not consume are returned to the converter, which reports them: an unconsumed key
means a feature vitkit's model does not have (layer scale, register tokens, ...), and silently dropping it
would change the model's outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vitkit.weights.errors import CheckpointError


def _same(x: Any) -> Any:
    return x


def _one(x: Any) -> tuple[Any]:
    return (x,)


@dataclass(frozen=True)
class Rule:
    dst: str  # vitkit (timm-style) state-dict key
    src: tuple[str, ...]  # keys in the foreign checkpoint
    fn: Callable[..., Any] = _same  # sources -> destination
    inv: Callable[[Any], tuple[Any, ...]] = _one  # destination -> sources, for writing the foreign format
    optional: bool = False  # skipped when none of its sources exists (e.g. biases of a bias-free layer)


def rule(dst: str, *src: str, fn: Callable[..., Any] = _same, inv: Callable | None = None, optional=False) -> Rule:
    return Rule(dst, tuple(src), fn, inv or _one, optional)


def apply_rules(rules: Iterable[Rule], arrays: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """Foreign arrays -> (vitkit state dict, source keys no rule used)."""
    out: dict[str, Any] = {}
    used: set[str] = set()
    for r in rules:
        present = [k in arrays for k in r.src]
        if not all(present):
            if r.optional and not any(present):
                continue
            missing = [k for k, p in zip(r.src, present, strict=True) if not p]
            raise CheckpointError(f"{source}: missing {missing}, needed for '{r.dst}'; the checkpoint is incomplete")
        out[r.dst] = r.fn(*(arrays[k] for k in r.src))
        used.update(r.src)
    return out, sorted(set(arrays) - used)


def invert_rules(rules: Iterable[Rule], state: Mapping[str, Any], target: str) -> tuple[dict[str, Any], list[str]]:
    """vitkit state dict -> (foreign arrays, vitkit keys the foreign format has no place for)."""
    out: dict[str, Any] = {}
    used: set[str] = set()
    for r in rules:
        if r.dst not in state:
            if r.optional:
                continue
            raise CheckpointError(f"cannot write {target}: the model has no '{r.dst}'")
        for key, value in zip(r.src, r.inv(state[r.dst]), strict=True):
            out[key] = value
        used.add(r.dst)
    return out, sorted(set(state) - used)


def unsupported(keys: list[str], source: str, known: Mapping[str, str]) -> CheckpointError:
    """An error naming keys vitkit cannot represent, explained by the first matching entry of ``known``."""
    reasons = sorted({why for k in keys for pattern, why in known.items() if pattern in k})
    shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
    detail = f" ({'; '.join(reasons)})" if reasons else ""
    return CheckpointError(
        f"{source}: weights with no place in vitkit's ViT{detail}: {shown}. vitkit does not drop weights silently; "
        "remove these keys if the feature is truly unused"
    )
