"""What vitkit knows about a model family, in one object: the :class:`Family` descriptor.

A family (``vit``, ``swin``, ``mae``, ``resnetv2``, ...) is a config class, a model class and everything the rest of
vitkit needs to handle its checkpoints and models without knowing its name: the module paths of its Transformer
blocks (adapters, visualisation), its shape adaptation on load (position tables, bias tables, heads), its readers
and writers of foreign formats, the task its models serve, the views that apply to it, and the families its
checkpoints can become (an MAE's encoder is a ViT). Code outside ``vitkit/families`` asks the descriptor; it never
compares family names or checks config classes.

Adding a family is a config module, a model module and a descriptor module defining ``FAMILY``; see
docs/architecture.md ("Adding a family").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vitkit.config.base import ModelConfig
from vitkit.weights.checkpoint import Checkpoint

State = dict[str, torch.Tensor]
Converted = tuple[State, ModelConfig]
# (checkpoint as read, the named registry config or None, hints such as num_heads) -> (vitkit state, config)
Convert = Callable[[Checkpoint, ModelConfig | None, Mapping[str, Any]], Converted]
# (state written for src, src config, config of the model to load into) -> state reshaped for dst
Adapt = Callable[[State, ModelConfig, ModelConfig], State]
# (vitkit state, config) -> whatever the target format's writer needs (see weights/convert.py)
Write = Callable[[State, ModelConfig], Any]
# (state, config, source name) -> (state, config) of another family
Derive = Callable[[State, ModelConfig, str], Converted]
# (a classifier's state, its config, the config of the model to start) -> the part of the state that model takes
Init = Callable[[State, ModelConfig, ModelConfig], State]


RECONSTRUCTION_NEEDS_MAE = (
    "--kind reconstruction needs an MAE checkpoint (encoder and decoder); pass an MAE run's model.safetensors"
)


def _never(ckpt: Checkpoint) -> bool:
    return False


def _keep(state: State, src: ModelConfig, dst: ModelConfig) -> State:
    return dict(state)


@dataclass(frozen=True)
class Reader:
    """One foreign checkpoint format a family reads.

    ``container`` is what :func:`vitkit.weights.detect.read_checkpoint` found (``state_dict`` for a bare tensor
    dict in a .pth/.safetensors/.bin file, ``npz``, ``hf`` for a transformers folder, ``timm_hub`` for a timm hub
    folder); ``claims`` says whether a file of that container is this family's in this format (by key names or
    model_type); ``convert`` turns it into a vitkit state dict and config. Among several readers that claim a file,
    the highest ``priority`` wins (an MAE state dict also looks like a timm ViT's).
    """

    format: str
    container: str
    convert: Convert
    claims: Callable[[Checkpoint], bool] = _never
    priority: int = 0
    describes: str = ""  # for error messages: what this reader expects


@dataclass(frozen=True)
class Family:
    """Everything vitkit needs to know about one model family (see the module docstring)."""

    name: str
    config_class: type[ModelConfig]
    model_class: type[nn.Module]
    task: str | None = "classification"  # what its models do (vitkit.tasks); None: a backbone for another model
    block_pattern: str | None = None  # full-match regex of Transformer block module paths, in forward order
    adapt: Adapt = _keep  # shape adaptation when loading weights of config src into a model of config dst
    head_prefixes: tuple[str, ...] = ("head.", "head_dist.", "pre_logits.")  # the classifier: fresh for new classes
    readers: tuple[Reader, ...] = ()
    writers: Mapping[str, Write] = field(default_factory=dict)  # foreign format ('hf', 'timm') -> writer
    viewer: str | None = None  # which drawing engine of vitkit.viz applies ('tokens', 'windows', 'reconstruction')
    views: Callable[[ModelConfig], tuple[str, ...]] = lambda cfg: ()  # the `vitkit visualize --kind`s that apply
    refusals: Mapping[str, str] = field(default_factory=dict)  # kind -> why it does not apply (one line)
    derived: Mapping[str, Derive] = field(default_factory=dict)  # family name -> this family's weights as that one
    init_from: Init | None = None  # how a model of this family starts from a classifier's weights (its backbone)
    # A family whose config nests another's (a segmentor's backbone) builds and reads it back through these.
    builder: Callable[[ModelConfig], nn.Module] | None = None
    config_reader: Callable[[dict[str, Any]], ModelConfig] | None = None

    def build(self, cfg: ModelConfig) -> nn.Module:
        """The model ``cfg`` describes, freshly initialised."""
        if not isinstance(cfg, self.config_class):
            raise TypeError(f"the {self.name!r} family builds from a {self.config_class.__name__}, got {type(cfg)}")
        return self.builder(cfg) if self.builder is not None else self.model_class(cfg)

    def config_from_dict(self, data: dict[str, Any]) -> ModelConfig:
        """A stored config (``cfg.to_dict()``) back as this family's config class."""
        return self.config_reader(data) if self.config_reader is not None else self.config_class.from_dict(data)

    def reader(self, fmt: str) -> Reader | None:
        return next((r for r in self.readers if r.format == fmt), None)
