"""What a checkpoint reader hands on: the container that was found, the file, its arrays as stored, and metadata.

The container says how the file is laid out (``vitkit``, ``vitkit_train``, ``state_dict``, ``npz``, ``hf``,
``timm_hub``); which family's format it is in is decided afterwards by the family descriptors' readers
(:mod:`vitkit.families`), so this module and the reading code know nothing about families.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Checkpoint:
    """A checkpoint as read: ``format`` is the container until a family's reader names the format it claims."""

    format: str
    path: Path
    tensors: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    container: str = ""

    def __post_init__(self) -> None:
        self.container = self.container or self.format
