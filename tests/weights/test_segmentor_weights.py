"""Segmentation checkpoints from elsewhere give the logits of the code that wrote them:

- an original ViT-Adapter + UperNet release file, made by the original code (mmsegmentation 0.20.2 and mmcv 1.4.2
  from PyPI with ViT-Adapter's own backbone, tests/fixtures/upernet_vit_adapter_release_tiny*.pt*), read by
  ``vitkit.load_pretrained(PATH)`` alone: architecture from the file's config text (never executed), classes and
  palette from its meta;
- a transformers ``UperNetForSemanticSegmentation`` folder with a Swin backbone, against transformers itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vitkit
from paths import REPO
from vitkit.weights.errors import CheckpointError
from vitkit.weights.mmseg import read_config

FIXTURES = REPO / "tests" / "fixtures"
RELEASE = FIXTURES / "upernet_vit_adapter_release_tiny.pth"


def test_the_release_file_alone_gives_the_original_logits():
    model = vitkit.load_pretrained(RELEASE)
    io = torch.load(FIXTURES / "upernet_vit_adapter_release_tiny_io.pt", weights_only=True)
    with torch.no_grad():
        logits, aux = model(io["input"], aux=True)
    assert type(model).__name__ == "Segmentor" and type(model.backbone).__name__ == "ViTAdapter"
    torch.testing.assert_close(logits, io["logits"], rtol=1e-4, atol=1e-4)  # logits reach 27
    torch.testing.assert_close(aux, io["aux_logits"], rtol=1e-4, atol=1e-4)
    assert model.cfg.extra["classes"] == ["wall", "building", "sky", "floor", "tree"]
    assert len({tuple(rgb) for rgb in model.cfg.extra["palette"]}) == 5
    assert model.cfg.backbone.mean == pytest.approx((0.485, 0.456, 0.406), abs=1e-6)  # img_norm_cfg / 255
    # Round trip through vitkit's own format.
    path = vitkit.save_pretrained(model, FIXTURES.parent.parent / ".pytest_cache" / "release.safetensors")
    again = vitkit.load_pretrained(path)
    with torch.no_grad():
        torch.testing.assert_close(again(io["input"]), logits, rtol=0, atol=0)


def test_without_a_config_the_error_names_the_argument(tmp_path):
    state = torch.load(RELEASE, weights_only=True)
    del state["meta"]["config"]
    torch.save(state, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="no meta\\['config'\\].*load_pretrained\\(PATH, model='upernet_vit"):
        vitkit.load_pretrained(tmp_path / "bare.pth")


def test_the_config_text_is_read_not_run(tmp_path):
    flag = tmp_path / "ran"
    text = (
        f"import os\nos.system('touch {flag}')\nnorm = dict(type='BN')\n"
        "model = dict(backbone=dict(type='ViTAdapter', depth=[False] * 3),"
        f" hook=__import__('os').system('touch {flag}'), decode_head=dict(norm_cfg=norm))\ngpu_ids = range(0, 8)\n"
    )
    names = read_config(text)
    assert not flag.exists()
    assert names["model"]["backbone"] == {"type": "ViTAdapter", "depth": [False, False, False]}
    assert names["model"]["decode_head"]["norm_cfg"] == {"type": "BN"}
    assert "not evaluated" in repr(names["model"]["hook"]) and "not evaluated" in repr(names["gpu_ids"])


@pytest.fixture(scope="module")
def hf_upernet(tmp_path_factory):
    transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")
    backbone = transformers.SwinConfig(
        embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=4, image_size=128,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    cfg = transformers.UperNetConfig(backbone_config=backbone, hidden_size=32, auxiliary_channels=16, num_labels=5)
    torch.manual_seed(0)
    model = transformers.UperNetForSemanticSegmentation(cfg).eval()
    with torch.no_grad():  # every tensor drawn, BatchNorm statistics and norms included, so each one matters
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            norm = "norm" in name and name.endswith("weight")  # LayerNorm / BatchNorm scales stay near one
            tensor.copy_(torch.randn_like(tensor) * 0.2 + (1.0 if norm or name.endswith("running_var") else 0.0))
            if name.endswith("running_var"):
                tensor.abs_()
    folder = tmp_path_factory.mktemp("hf_upernet")
    model.save_pretrained(folder)
    return model, folder


def test_a_transformers_upernet_folder_gives_its_logits(hf_upernet):
    reference, folder = hf_upernet
    model = vitkit.load_pretrained(folder)
    assert model.cfg.backbone.family == "swin" and model.cfg.neck == "norms" and model.cfg.num_classes == 5
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = reference(pixel_values=x).logits
        got = model(x)
    assert want.shape == got.shape == (2, 5, 128, 128)
    scale = float(want.abs().max())
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4 * scale)
