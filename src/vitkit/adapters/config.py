"""What to add to a frozen backbone: one frozen dataclass, the recipe's ``adapter:`` section.

Methods (each leaves the pre-trained weights untouched and trains only its own parameters and the head):

- ``bottleneck``: serial adapter after each block's MLP, h + up(GELU(down(h))), up zero-initialised
  (Houlsby et al. 2019; Pfeiffer et al. 2020 place one per block after the MLP).
- ``parallel``: AdaptFormer (Chen et al. 2022): MLP(x) + s * up(ReLU(down(x))) beside the MLP, same input.
- ``lora``: Hu et al. 2021: W x + (alpha / r) B A x on the attention's qkv and output projections (and the
  MLP's fc1/fc2 with ``lora_mlp``); B starts at zero; mergeable into W for zero-cost inference.
- ``prompt``: visual prompt tuning (Jia et al. 2022): ``num_prompts`` learned tokens after the prefix tokens,
  at the input only (shallow) or replaced before every block (``deep``).
- ``stem_rank`` > 0 (with any method) adds LoRA of that rank to every convolution of the patch embedding (a conv
  stem's layers, or the patch projection): a frozen stem keeps only the low-level features its first task
  needed, and tasks such as anti-spoofing live in exactly those. The stem's norm layers then train too
  (BatchNorm: affine and batch statistics), as the adapted convolutions no longer match their frozen statistics.
- ``head_adapter`` > 0 (with any method) puts a serial bottleneck of that width between the encoder and the head
  (encoder -> adapter -> head): the classifier reads h + up(GELU(down(h))) of the pooled, normalised features h
  instead of h, up zero-initialised. The anti-spoofing adapter setups add it to the per-block bottlenecks, so
  the new live/spoof head gets a nonlinear map of features pooled for another task.
- ``head``: freeze the whole backbone and add nothing (a linear probe: only ``trainable``, the head, learns).
- ``none``: freeze nothing, add nothing (full fine-tuning).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

METHODS = ("bottleneck", "parallel", "lora", "prompt", "head", "none")


@dataclass(frozen=True)
class AdapterConfig:
    """``rank`` is LoRA's r; ``bottleneck`` the width of the bottleneck/parallel adapters; ``layers`` the block
    indices (counted over all stages, negative from the end) that get adapters, ``None`` for all; ``trainable``
    the base parameter-name prefixes that keep training (the classifier)."""

    method: str = "none"
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    bottleneck: int = 64
    scale: float = 0.1  # AdaptFormer's s
    lora_mlp: bool = False
    stem_rank: int = 0
    head_adapter: int = 0  # width of the bottleneck between the encoder and the head; 0: none
    num_prompts: int = 10
    deep: bool = False
    layers: tuple[int, ...] | None = None
    trainable: tuple[str, ...] = ("head",)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown adapter method {self.method!r}; use one of {', '.join(METHODS)}")
        for name in ("rank", "bottleneck", "num_prompts"):
            if getattr(self, name) < 1:
                raise ValueError(f"adapter.{name} must be at least 1, got {getattr(self, name)}")
        if self.stem_rank < 0:
            raise ValueError(f"adapter.stem_rank must be >= 0, got {self.stem_rank}; use 0 to keep the stem frozen")
        if self.stem_rank and self.method == "none":
            raise ValueError("adapter.stem_rank adds LoRA to a frozen stem, but method none trains the whole model; "
                             "choose an adapter method or drop stem_rank")  # fmt: skip
        if isinstance(self.head_adapter, bool) or self.head_adapter < 0:
            raise ValueError(f"adapter.head_adapter is the width of the bottleneck between the encoder and the head "
                             f"(e.g. 64; 0 for none), got {self.head_adapter!r}")  # fmt: skip
        if self.head_adapter and self.method == "none":
            raise ValueError("adapter.head_adapter adds a bottleneck in front of the head of a frozen backbone, but "
                             "method none trains the whole model; choose an adapter method (head: the bottleneck "
                             "and head alone) or drop head_adapter")  # fmt: skip
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"adapter.dropout must lie in [0, 1), got {self.dropout}")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        object.__setattr__(self, "trainable", tuple(self.trainable))

    @property
    def width(self) -> int:
        """The hidden width the method adds (checked against each block's width)."""
        return self.rank if self.method == "lora" else self.bottleneck

    def replace(self, **changes: Any) -> AdapterConfig:
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown adapter field(s) {unknown}; valid fields: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown adapter field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**data)
