"""Export (ONNX through onnxruntime, torch.export, TorchScript) and the `vitkit export` / `vitkit convert` CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vitkit
from helpers import tiny_config
from vitkit import VisionTransformer
from vitkit.weights import CheckpointError, export_model
from vitkit.weights import export as export_module


@pytest.fixture
def checkpoint(tmp_path):
    model = VisionTransformer(tiny_config(act_layer="gelu_tanh")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model, vitkit.save_pretrained(model, tmp_path / "m.safetensors")


def test_onnx_runs_in_onnxruntime_with_a_dynamic_batch(tmp_path, checkpoint):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, path = checkpoint
    result = export_model(path, tmp_path / "m.onnx", format="onnx", opset=17)
    assert result.checked_batches == (1, 3)
    graph = onnx.load(str(result.path))
    assert graph.opset_import[0].version >= 17
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    x = torch.randn(5, 3, 16, 16)  # a batch size the exporter never saw
    got = ort.InferenceSession(str(result.path)).run(None, {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_torchscript(tmp_path, checkpoint):
    model, _ = checkpoint
    result = export_model(model, tmp_path / "m.pt", format="torchscript")
    loaded = torch.jit.load(str(result.path))
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_wrong_export_is_caught(tmp_path, checkpoint, monkeypatch):
    """The built-in verification fails loudly when the exported program computes something else."""
    model, _ = checkpoint
    monkeypatch.setattr(export_module, "_export_torchscript", lambda m, path: path.write_bytes(b"stub"))
    monkeypatch.setattr(export_module, "_load_torchscript", lambda path: lambda x: model(x) + 1e-2)
    with pytest.raises(CheckpointError, match="differ from PyTorch by 0.01 at batch 1"):
        export_model(model, tmp_path / "bad.pt", format="torchscript")


def test_bad_export_arguments(tmp_path, checkpoint):
    model, _ = checkpoint
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_model(model, tmp_path / "m", format="tflite")
    with pytest.raises(ValueError, match="opset 13 is too old"):
        export_model(model, tmp_path / "m.onnx", opset=13)


@pytest.mark.slow
def test_hybrid_onnx_export(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = VisionTransformer(tiny_config(img_size=32, patch_size=1, backbone_layers=(1, 1), backbone_width=32))
    result = export_model(model.eval(), tmp_path / "hybrid.onnx")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    got = ort.InferenceSession(str(result.path)).run(None, {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-4)
