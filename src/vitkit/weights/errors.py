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
