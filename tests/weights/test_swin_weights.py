"""Swin checkpoints: timm (both layouts), the original release's .pth and transformers folders reproduce the source's
logits; bias tables resample bicubically on a window change; vitkit safetensors round-trip; ONNX export; and a
checkpoint of another family given for a Swin name (or the reverse) stops with one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import vitkit
from helpers import tiny_config
from swin_helpers import cubic_resample_reference, hf_logits, hf_swin, timm_state
from vitkit.models.swin import SwinTransformer
from vitkit.weights import CheckpointError, UnsafeCheckpointError, detect_format, export_model

pytest.importorskip("transformers")

# timm's current SwinTransformer names for the tiny config (depths 2, 2, 1), written out from timm's module tree.
TIMM_KEYS = (
    {f"patch_embed.{m}.{w}" for m in ("proj", "norm") for w in ("weight", "bias")}
    | {f"layers.{s}.downsample.{m}" for s in (1, 2) for m in ("norm.weight", "norm.bias", "reduction.weight")}
    | {
        f"layers.{s}.blocks.{b}.{m}"
        for s, depth in enumerate((2, 2, 1))
        for b in range(depth)
        for m in (
            "norm1.weight",
            "norm1.bias",
            "attn.relative_position_bias_table",
            "attn.qkv.weight",
            "attn.qkv.bias",
            "attn.proj.weight",
            "attn.proj.bias",
            "norm2.weight",
            "norm2.bias",
            "mlp.fc1.weight",
            "mlp.fc1.bias",
            "mlp.fc2.weight",
            "mlp.fc2.bias",
        )  # fmt: skip
    }
    | {"norm.weight", "norm.bias", "head.fc.weight", "head.fc.bias"}
)


@pytest.fixture(scope="module")
def reference():
    hf = hf_swin()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return hf, x, hf_logits(hf, x)


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_vitkit_state_dict_uses_timm_current_names():
    assert set(SwinTransformer(vitkit.get_config("swin_cifar_patch2_window4_32").replace(
        embed_dim=16, depths=(2, 2, 1), num_heads=(2, 2, 4), num_classes=5)).state_dict()) == TIMM_KEYS  # fmt: skip


def test_timm_current_layout_file(tmp_path, reference):
    hf, x, expected = reference
    state = timm_state(hf)
    assert set(state) == TIMM_KEYS
    save_file(state, tmp_path / "swin.safetensors")
    assert detect_format(tmp_path / "swin.safetensors") == "timm"
    model = vitkit.load_pretrained(tmp_path / "swin.safetensors")  # size: the last stage is one window (32 px)
    assert model.cfg.img_size == (32, 32) and model.cfg.window_size == 4 and model.cfg.num_heads == (2, 2, 4)
    torch.testing.assert_close(_logits(model, x), expected, rtol=0, atol=1e-5)


def test_timm_file_with_a_registry_name_takes_its_preprocessing(tmp_path):
    cfg = vitkit.get_config("swin_cifar_patch2_window4_32")
    with torch.device("meta"):  # only the names and shapes matter here
        shapes = {k: v.shape for k, v in SwinTransformer(cfg).state_dict().items()}
    torch.save({k: torch.zeros(shape) for k, shape in shapes.items()}, tmp_path / "swin.pth")
    model = vitkit.load_pretrained(tmp_path / "swin.pth", model="swin_cifar_patch2_window4_32")
    assert model.cfg == cfg


def test_timm_hub_folder_names_its_architecture(tmp_path):
    import json

    cfg = vitkit.get_config("swin_cifar_patch2_window4_32")
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in SwinTransformer(cfg).state_dict().items()}
    save_file({k: torch.zeros(shape) for k, shape in shapes.items()}, tmp_path / "model.safetensors")
    hub = {
        "architecture": "swin_cifar_patch2_window4_32",
        "pretrained_cfg": {"mean": [0.1, 0.2, 0.3], "crop_pct": 0.95},
    }
    (tmp_path / "config.json").write_text(json.dumps(hub))
    model = vitkit.load_pretrained(tmp_path)
    assert model.cfg == cfg.replace(mean=(0.1, 0.2, 0.3), crop_pct=0.95)


@pytest.mark.parametrize("wrapped", [True, False], ids=["release-pth", "timm<0.9"])
def test_original_release_layout(tmp_path, reference, wrapped):
    hf, x, expected = reference
    state = timm_state(hf, original=True)
    assert "layers.0.downsample.reduction.weight" in state and "head.weight" in state
    torch.save({"model": state} if wrapped else state, tmp_path / "swin_tiny.pth")
    assert detect_format(tmp_path / "swin_tiny.pth") == "swin_original"
    model = vitkit.load_pretrained(tmp_path / "swin_tiny.pth")
    assert model.cfg.img_size == (32, 32)  # read from the shifted-window mask's number of windows
    torch.testing.assert_close(_logits(model, x), expected, rtol=0, atol=1e-5)


def test_original_training_checkpoint_with_python_objects_is_refused(tmp_path, reference):
    import argparse

    torch.save({"model": timm_state(reference[0], original=True), "config": argparse.Namespace(lr=1)},
               tmp_path / "ckpt_epoch_300.pth")  # fmt: skip
    with pytest.raises(UnsafeCheckpointError, match="refusing to unpickle"):
        vitkit.load_pretrained(tmp_path / "ckpt_epoch_300.pth")


def test_transformers_folder_keeps_class_names_and_swinmodel_gives_pooled_features(tmp_path, reference):
    hf, x, expected = reference
    hf.config.id2label = {i: f"class{i}" for i in range(5)}
    hf.save_pretrained(tmp_path / "cls")
    assert detect_format(tmp_path / "cls") == "hf_swin"
    model = vitkit.load_pretrained(tmp_path / "cls")
    assert model.cfg.extra["classes"] == [f"class{i}" for i in range(5)]
    torch.testing.assert_close(_logits(model, x), expected, rtol=0, atol=1e-5)
    base = hf_swin(num_labels=0)
    base.save_pretrained(tmp_path / "base")
    features = vitkit.load_pretrained(tmp_path / "base")
    assert features.cfg.num_classes == 0
    torch.testing.assert_close(_logits(features, x), hf_logits(base, x), rtol=0, atol=1e-5)


def test_bias_tables_resample_bicubically_on_a_window_change(tmp_path, reference):
    hf, x, _ = reference
    save_file(timm_state(hf), tmp_path / "swin.safetensors")
    model = vitkit.load_pretrained(tmp_path / "swin.safetensors", img_size=64, window_size=8)
    assert model.cfg.window_size == 8 and model.cfg.img_size == (64, 64)
    source = timm_state(hf)["layers.1.blocks.1.attn.relative_position_bias_table"].double().numpy()  # (49, heads)
    got = model.state_dict()["layers.1.blocks.1.attn.relative_position_bias_table"].double().numpy()  # (225, heads)
    np.testing.assert_allclose(got, cubic_resample_reference(source, 15), rtol=1e-5, atol=1e-6)
    assert _logits(model, torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_new_class_count_gets_a_zero_head_and_a_resolution_change_keeps_tables(tmp_path, reference):
    hf, x, _ = reference
    save_file(timm_state(hf), tmp_path / "swin.safetensors")
    model = vitkit.load_pretrained(tmp_path / "swin.safetensors", num_classes=3, img_size=64)
    assert not _logits(model, torch.randn(1, 3, 64, 64)).any()
    torch.testing.assert_close(
        model.layers[0].blocks[1].attn.relative_position_bias_table,
        timm_state(hf)["layers.0.blocks.1.attn.relative_position_bias_table"],
    )


def test_vitkit_safetensors_round_trip(tmp_path, reference):
    hf, x, expected = reference
    save_file(timm_state(hf), tmp_path / "swin.safetensors")
    model = vitkit.load_pretrained(tmp_path / "swin.safetensors")
    path = vitkit.save_pretrained(model, tmp_path / "vitkit.safetensors")
    assert detect_format(path) == "vitkit"
    again = vitkit.load_pretrained(path)
    assert isinstance(again, SwinTransformer) and again.cfg == model.cfg
    torch.testing.assert_close(_logits(again, x), expected, rtol=0, atol=1e-5)


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = SwinTransformer(vitkit.get_config("swin_cifar_patch2_window4_32").replace(
        embed_dim=16, depths=(2, 2), num_heads=(2, 2))).eval()  # fmt: skip
    result = export_model(model, tmp_path / "swin.onnx", format="onnx")
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(4))  # a batch size the export never saw
    got = ort.InferenceSession(str(result.path)).run(None, {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert abs(want).max() > 1e-2
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_another_family_for_a_swin_name_stops_with_one_line(tmp_path):
    vit = vitkit.VisionTransformer(tiny_config())
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    with pytest.raises(CheckpointError, match="holds a timm ViT/DeiT state dict .* named model is a 'swin'") as info:
        vitkit.load_pretrained(tmp_path / "vit.pth", model="swin_tiny_patch4_window7_224")
    assert "\n" not in str(info.value) and "name a vit model" in str(info.value)
    path = vitkit.save_pretrained(vit, tmp_path / "vit.safetensors")
    with pytest.raises(CheckpointError, match="holds a 'vit' model, but a 'swin' model is wanted"):
        vitkit.load_pretrained(path, model="swin_tiny_patch4_window7_224")


def test_swin_weights_for_a_vit_name_stop_with_one_line(tmp_path, reference):
    save_file(timm_state(reference[0]), tmp_path / "swin.safetensors")
    with pytest.raises(CheckpointError, match="holds a timm Swin state dict .* name a swin model") as info:
        vitkit.load_pretrained(tmp_path / "swin.safetensors", model="vit_base_patch16_224")
    assert "\n" not in str(info.value)


def test_unsupported_swin_variants_are_named(tmp_path, reference):
    state = timm_state(reference[0])
    state["absolute_pos_embed"] = torch.zeros(1, 256, 16)
    save_file(state, tmp_path / "ape.safetensors")
    with pytest.raises(CheckpointError, match="absolute position embeddings"):
        vitkit.load_pretrained(tmp_path / "ape.safetensors")


def test_convert_writes_a_folder_transformers_opens_and_a_timm_file(tmp_path, reference):
    import transformers

    from vitkit.weights import convert_checkpoint

    hf, x, expected = reference
    save_file(timm_state(hf), tmp_path / "swin.safetensors")
    folder = convert_checkpoint(tmp_path / "swin.safetensors", tmp_path / "hf", to="hf")
    again = transformers.SwinForImageClassification.from_pretrained(folder).eval()
    torch.testing.assert_close(hf_logits(again, x), expected, rtol=0, atol=1e-5)
    timm_file = convert_checkpoint(tmp_path / "swin.safetensors", tmp_path / "timm.pth", to="timm")
    assert set(torch.load(timm_file, weights_only=True)) == TIMM_KEYS
