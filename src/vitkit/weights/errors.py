"""Errors raised while reading, converting or loading checkpoints.

All derive from ``ValueError`` so that callers (and the CLI) treat them as bad input, not as bugs.
"""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or converted; the message names the file and what was expected."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that would need arbitrary Python objects to load; vitkit refuses instead of executing it."""


class StateDictMismatchError(CheckpointError):
    """Weights that do not fit the model; the message lists every differing key with both shapes."""

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report


def block_problems(cfg: object, library: str) -> list[str]:
    """What the plain ViT of another library (timm's, Hugging Face's) cannot hold of a vitkit ViT's position
    encoding and blocks, one entry each, for a writer's refusal: both add one learned absolute table and use
    pre-LN blocks."""
    problems = []
    if cfg.pos_embed != "learned":
        problems.append(
            f"pos_embed={cfg.pos_embed!r} ({library}'s ViT adds one learned absolute table; save it in vitkit's "
            "format with save_pretrained, or train with pos_embed='learned')"
        )
    if not cfg.pre_norm:
        problems.append("post-LN blocks (pre_norm=False)")
    return problems
