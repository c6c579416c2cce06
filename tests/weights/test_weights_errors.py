"""Every bad input gets a clear error naming the file and what was expected; nothing is unpickled unsafely."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import vitkit
from helpers import tiny_config
from vitkit import VisionTransformer
from vitkit.weights import CheckpointError, StateDictMismatchError, UnsafeCheckpointError, load_state_dict
from weights_helpers import fake_vit_npz


@pytest.fixture
def saved(tmp_path):
    model = VisionTransformer(tiny_config())
    return model, vitkit.save_pretrained(model, tmp_path / "m.safetensors")


def test_mismatch_lists_every_key_with_both_shapes(saved):
    _, path = saved
    other = VisionTransformer(tiny_config(depth=1, mlp_dim=64))
    with pytest.raises(StateDictMismatchError) as info:
        vitkit.load_pretrained(path, model=other)
    msg = str(info.value)
    assert "blocks.0.mlp.fc1.weight: model expects [64, 32], checkpoint has [128, 32]" in msg
    assert "blocks.0.mlp.fc2.weight: model expects [32, 64], checkpoint has [32, 128]" in msg
    assert "not in the model (12): blocks.1.attn.proj.bias, " in msg and "blocks.1.norm1.weight" in msg
    assert str(path) in msg
    assert len(info.value.report.mismatched) == 3  # fc1.weight, fc1.bias, fc2.weight


def test_non_strict_loads_what_fits_and_reports_the_rest(saved, caplog):
    src, path = saved
    other = VisionTransformer(tiny_config(depth=3, num_classes=7))
    with caplog.at_level("INFO", logger="vitkit.weights"):
        loaded = vitkit.load_pretrained(path, model=other, strict=False)
    assert loaded is other
    assert torch.equal(other.blocks[1].attn.qkv.weight, src.blocks[1].attn.qkv.weight)
    assert "dropped the checkpoint's 5-class head for a new 7-class one" in caplog.text
    assert "missing from the checkpoint (12): blocks.2.attn.proj.bias, " in caplog.text
    report = load_state_dict(VisionTransformer(tiny_config(depth=3)), src.state_dict(), strict=False)
    assert not report.mismatched and not report.unexpected and len(report.missing) == 12


def test_pickles_needing_code_are_refused(tmp_path, saved):
    model, _ = saved
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=0.1)}, tmp_path / "train.pth")
    with pytest.raises(UnsafeCheckpointError, match=r"train.pth: refusing to unpickle"):
        vitkit.load_pretrained(tmp_path / "train.pth", num_heads=4)
    torch.save(model, tmp_path / "whole_model.pth")  # a pickled nn.Module
    with pytest.raises(UnsafeCheckpointError, match="refusing to unpickle"):
        vitkit.load_pretrained(tmp_path / "whole_model.pth")
    arrays = fake_vit_npz()
    arrays["meta"] = np.array([{"a": 1}], dtype=object)
    np.savez(tmp_path / "obj.npz", **arrays)
    with pytest.raises(UnsafeCheckpointError, match="obj.npz: refusing to load object arrays"):
        vitkit.load_pretrained(tmp_path / "obj.npz")


@pytest.mark.parametrize("kind", ["safetensors", "npz", "pth"])
def test_truncated_files(tmp_path, saved, kind):
    model, st_path = saved
    path = tmp_path / f"cut.{kind}"
    if kind == "safetensors":
        data = st_path.read_bytes()
    elif kind == "npz":
        np.savez(tmp_path / "full.npz", **fake_vit_npz())
        data = (tmp_path / "full.npz").read_bytes()
    else:
        torch.save(model.state_dict(), tmp_path / "full.pth")
        data = (tmp_path / "full.pth").read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match=rf"cut.{kind}: .*truncated or corrupt"):
        vitkit.load_pretrained(path, num_heads=4)


def test_empty_and_unknown_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty: the folder is empty; expected"):
        vitkit.load_pretrained(tmp_path / "empty")
    (tmp_path / "zero.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="zero.pth: the file is empty"):
        vitkit.load_pretrained(tmp_path / "zero.pth")
    (tmp_path / "notes.txt").write_text("hello, not weights")
    with pytest.raises(CheckpointError, match="notes.txt: unknown format .*expected a vitkit .safetensors file"):
        vitkit.load_pretrained(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors not found"):
        vitkit.load_pretrained(tmp_path / "nowhere.safetensors")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme.md").write_text("x")
    with pytest.raises(CheckpointError, match=r"other: no config.json or model.safetensors \(found \['readme.md'\]\)"):
        vitkit.load_pretrained(tmp_path / "other")


def test_foreign_layouts_without_their_context(tmp_path):
    save_file(
        {"embeddings.patch_embeddings.projection.weight": torch.zeros(4, 3, 2, 2)}, str(tmp_path / "hf.safetensors")
    )
    with pytest.raises(CheckpointError, match="Hugging Face weights without their config; pass the folder"):
        vitkit.load_pretrained(tmp_path / "hf.safetensors")
    save_file({"fc.weight": torch.zeros(2, 2)}, str(tmp_path / "mlp.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"unknown names \(e.g. \['fc.weight'\]\); expected .*a timm ViT/DeiT state dict"
    ):
        vitkit.load_pretrained(tmp_path / "mlp.safetensors")
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_file({"x": torch.zeros(1)}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="model_type 'bert'; expected a transformers folder of model_type"):
        vitkit.load_pretrained(folder)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "bad_meta.safetensors"), metadata={"vitkit.config": "{oops"})
    with pytest.raises(CheckpointError, match="bad_meta.safetensors: the 'vitkit.config' metadata is not valid JSON"):
        vitkit.load_pretrained(tmp_path / "bad_meta.safetensors")


def test_override_errors(saved):
    _, path = saved
    with pytest.raises(TypeError, match="unknown ViTConfig field"):
        vitkit.load_pretrained(path, num_clases=3)
    with pytest.raises(ValueError, match="apply when vitkit builds the model"):
        vitkit.load_pretrained(path, model=VisionTransformer(tiny_config()), num_classes=3)
