"""The `vitkit export` and `vitkit convert` commands: each parses, calls one library function and prints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vitkit
from helpers import tiny_config
from vitkit import VisionTransformer
from vitkit.cli.main import main
from weights_helpers import fake_vit_npz


@pytest.fixture
def checkpoint(tmp_path):
    model = VisionTransformer(tiny_config()).eval()
    return model, vitkit.save_pretrained(model, tmp_path / "m.safetensors")


def test_cli_export(tmp_path, checkpoint, capsys):
    _, path = checkpoint
    assert main(["export", str(path), "--format", "torch_export", "--out", str(tmp_path / "m.pt2")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'm.pt2'} (torch_export); max |exported - PyTorch| =" in out
    program = torch.export.load(str(tmp_path / "m.pt2")).module()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(program(x), checkpoint[0](x), rtol=1e-5, atol=1e-5)


def test_cli_convert_jax_to_hf_runs_in_transformers(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    np.savez(tmp_path / "vit.npz", **fake_vit_npz())
    assert main(["convert", str(tmp_path / "vit.npz"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert "wrote" in capsys.readouterr().out
    hf = transformers.ViTForImageClassification.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.hidden_act == "gelu_pytorch_tanh" and hf.config.layer_norm_eps == 1e-6
    ours = vitkit.load_pretrained(tmp_path / "vit.npz")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(hf(pixel_values=x).logits, ours(x), rtol=1e-5, atol=1e-5)


def test_cli_convert_to_vitkit_and_timm_with_overrides(tmp_path, checkpoint, capsys):
    _, path = checkpoint
    assert main(["convert", str(path), str(tmp_path / "t.pth"), "--to", "timm"]) == 0
    assert main(["convert", str(tmp_path / "t.pth"), str(tmp_path / "v.safetensors")]) == 2  # timm: heads unknown
    assert "name the model" in capsys.readouterr().err
    new = tmp_path / "n.safetensors"
    assert main(["convert", str(path), str(new), "--num-classes", "3", "--img-size", "32"]) == 0
    converted = vitkit.load_pretrained(new)
    assert converted.cfg.num_classes == 3 and converted.cfg.img_size == (32, 32)


def test_cli_reports_bad_input(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.npz"), str(tmp_path / "out")]) == 2
    assert "vitkit convert: error: checkpoint" in capsys.readouterr().err
