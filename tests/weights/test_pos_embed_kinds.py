"""Saving, loading, resampling, writing and exporting ViTs with pos_embed='sincos1d' and 'relative'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vitkit
from helpers import tiny_config
from pos_embed_helpers import reference_sincos_1d
from vitkit import VisionTransformer
from vitkit.weights import CheckpointError, export_model, save_hf, save_timm

KINDS = ["sincos1d", "relative"]
TABLE = "blocks.0.attn.relative_position_bias_table"


def _saved(tmp_path, kind: str) -> tuple[VisionTransformer, object]:
    model = VisionTransformer(tiny_config(pos_embed=kind)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)  # far from the initialisation, so a dropped or reset tensor shows
    return model, vitkit.save_pretrained(model, tmp_path / "m.safetensors")


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_round_trip_gives_identical_logits(tmp_path, kind):
    model, path = _saved(tmp_path, kind)
    loaded = vitkit.load_pretrained(path)
    assert loaded.cfg.pos_embed == kind
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_relative_tables_are_resampled_when_loading_at_another_size(tmp_path):
    model, path = _saved(tmp_path, "relative")
    same = vitkit.load_pretrained(path, img_size=16)  # identity-sized: the values unchanged
    assert torch.equal(same.state_dict()[TABLE], model.state_dict()[TABLE])
    bigger = vitkit.load_pretrained(path, img_size=(24, 20))  # 6x5 patches
    table = bigger.state_dict()[TABLE]
    assert table.shape == (11 * 9 + 3, 4)
    assert torch.equal(table[-3:], model.state_dict()[TABLE][-3:])  # the class entries kept
    x = torch.randn(2, 3, 24, 20)
    with torch.no_grad():
        out = bigger(x)
        assert torch.isfinite(out).all()
        model.dynamic_img_size = True  # resampling on the fly gives what resampling at load gives
        torch.testing.assert_close(model(x), out)


def test_sincos1d_is_recomputed_when_loading_at_another_size(tmp_path):
    _, path = _saved(tmp_path, "sincos1d")
    bigger = vitkit.load_pretrained(path, img_size=(24, 20))
    np.testing.assert_allclose(bigger.pos_embed[0, 1:].double().numpy(), reference_sincos_1d(30, 32), atol=1e-7)
    with torch.no_grad():
        assert torch.isfinite(bigger(torch.randn(1, 3, 24, 20))).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("save", [save_timm, save_hf])
def test_timm_and_hf_writers_refuse_with_the_kind_and_the_fix(tmp_path, kind, save):
    model = VisionTransformer(tiny_config(pos_embed=kind))
    with pytest.raises(CheckpointError, match=rf"pos_embed='{kind}'.*save_pretrained") as err:
        save(model, tmp_path / "out")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_export_carries_the_position_information(tmp_path, kind):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, _ = _saved(tmp_path, kind)
    result = export_model(model, tmp_path / "m.onnx", format="onnx", opset=17)  # verified against PyTorch inside
    x = torch.randn(2, 3, 16, 16)
    got = ort.InferenceSession(str(result.path)).run(None, {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-4)
