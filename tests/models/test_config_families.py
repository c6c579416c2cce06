"""The multi-family plumbing: configs register by family, round-trip through JSON, and checkpoints say which."""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import pytest
import torch
from safetensors import safe_open

import vitkit
from vitkit.config import CONFIG_TYPES, ModelConfig, ViTConfig, config_from_dict
from vitkit.weights.adapt import adapt_state_dict
from vitkit.weights.errors import CheckpointError


@dataclasses.dataclass(frozen=True)
class _ToyConfig(ModelConfig):
    width: int = 4
    num_classes: int = 3

    family: ClassVar[str] = "toy_for_tests"
    model_class: ClassVar[str] = "torch.nn:Identity"


def test_families_register_and_round_trip():
    assert CONFIG_TYPES["vit"] is ViTConfig and CONFIG_TYPES["toy_for_tests"] is _ToyConfig
    cfg = vitkit.get_config("vit_tiny_patch4_32")
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict())), "vit") == cfg
    assert config_from_dict(_ToyConfig(width=7).to_dict(), "toy_for_tests") == _ToyConfig(width=7)


def test_unknown_family_and_field_are_named():
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        config_from_dict({}, "nope")
    with pytest.raises(TypeError, match=r"unknown _ToyConfig field\(s\) \['depth'\]"):
        _ToyConfig().replace(depth=3)
    with pytest.raises(ValueError, match=r"unknown _ToyConfig key\(s\) \['depth'\]"):
        _ToyConfig.from_dict({"depth": 3})


def test_saved_file_names_its_family(tmp_path):
    model = vitkit.create_model("vit_tiny_patch4_32", depth=1, embed_dim=32, num_heads=2, mlp_dim=64)
    path = vitkit.save_pretrained(model, tmp_path / "m.safetensors")
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["vitkit.family"] == "vit"
    again = vitkit.load_pretrained(path)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(again(x), model.eval()(x), rtol=0, atol=0)


def test_cross_family_load_is_refused():
    with pytest.raises(CheckpointError, match="a 'vit' checkpoint cannot load into a 'toy_for_tests' model"):
        adapt_state_dict({}, ViTConfig(), _ToyConfig())
