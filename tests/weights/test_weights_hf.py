"""Hugging Face folders written by transformers itself load with transformers' logits; vitkit writes folders
that transformers loads; vitkit's own file round-trips exactly."""

from __future__ import annotations

import json

import pytest
import torch

import vitkit
from helpers import tiny_config
from vitkit import VisionTransformer
from vitkit.weights import detect_format, save_hf

transformers = pytest.importorskip("transformers")

TINY_HF = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16, patch_size=4
)


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    """transformers zero-initialises biases and tokens; randomise everything so every mapping is exercised."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "layernorm" in name and name.endswith("weight") else 0.0, 0.2)
    return model.eval()


def _logits_equal(hf_out: torch.Tensor, ours: torch.Tensor) -> None:
    assert hf_out.abs().max() > 1e-2
    torch.testing.assert_close(ours, hf_out, rtol=1e-5, atol=1e-5 * float(hf_out.abs().max()))


@pytest.mark.parametrize(
    "changes",
    [{}, {"hidden_act": "gelu_new", "layer_norm_eps": 1e-6}, {"qkv_bias": False, "image_size": [16, 24]}],
    ids=["defaults", "tanh_gelu", "no_qkv_bias_non_square"],
)
def test_transformers_vit_folder_loads_with_its_logits(tmp_path, changes):
    hf = _randomise(
        transformers.ViTForImageClassification(transformers.ViTConfig(**{**TINY_HF, "num_labels": 4, **changes}))
    )
    hf.save_pretrained(tmp_path)
    assert detect_format(tmp_path) == "hf"
    model = vitkit.load_pretrained(tmp_path)
    assert model.cfg.norm_eps == changes.get("layer_norm_eps", 1e-12)  # HF's default epsilon travels
    assert model.cfg.act_layer == ("gelu_tanh" if "hidden_act" in changes else "gelu")
    size = changes.get("image_size", [16, 16])
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        _logits_equal(hf(pixel_values=x).logits, model(x))


def test_transformers_deit_with_teacher_and_preprocessor(tmp_path):
    cfg = transformers.DeiTConfig(**TINY_HF, num_labels=3, id2label={0: "cat", 1: "dog", 2: "fox"})
    hf = _randomise(transformers.DeiTForImageClassificationWithTeacher(cfg))
    hf.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.1, 0.2, 0.3], "image_std": [1, 2, 3]})
    )
    model = vitkit.load_pretrained(tmp_path)
    assert (
        model.cfg.distilled
        and model.cfg.mean == (0.1, 0.2, 0.3)
        and model.cfg.extra["classes"] == ["cat", "dog", "fox"]
    )
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        _logits_equal(hf(pixel_values=x).logits, model(x))


def test_transformers_base_model_pooler_becomes_pre_logits(tmp_path):
    hf = _randomise(transformers.ViTModel(transformers.ViTConfig(**TINY_HF, pooler_output_size=24)))
    hf.save_pretrained(tmp_path)
    model = vitkit.load_pretrained(tmp_path)
    assert model.cfg.num_classes == 0 and model.cfg.representation_size == 24
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = hf(pixel_values=x)
        _logits_equal(out.pooler_output, model(x))
        _logits_equal(out.last_hidden_state, model.forward_features(x))


def test_pytorch_model_bin_with_in_memory_names(tmp_path):
    """pytorch_model.bin holding transformers>=5 module names (vit.layers.0.attention.q_proj ...) also loads."""
    hf = _randomise(transformers.ViTForImageClassification(transformers.ViTConfig(**TINY_HF, num_labels=2)))
    hf.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    state = hf.state_dict()
    assert any(".q_proj." in k for k in state)
    torch.save(state, tmp_path / "pytorch_model.bin")
    model = vitkit.load_pretrained(tmp_path)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        _logits_equal(hf(pixel_values=x).logits, model(x))


@pytest.mark.parametrize("distilled", [False, True], ids=["vit", "deit"])
def test_vitkit_to_hf_to_transformers_and_back(tmp_path, distilled):
    cfg = tiny_config(distilled=distilled, norm_eps=1e-6, act_layer="gelu_tanh", extra={"classes": list("abcde")})
    model = _randomise(VisionTransformer(cfg))
    save_hf(model, tmp_path / "hf")
    cls = transformers.DeiTForImageClassificationWithTeacher if distilled else transformers.ViTForImageClassification
    hf = cls.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.id2label[2] == "c"
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        _logits_equal(hf(pixel_values=x).logits, model(x))
        back = vitkit.load_pretrained(tmp_path / "hf")
        assert torch.equal(back(x), model(x))
    assert back.cfg == model.cfg and back.cfg.extra["classes"] == list("abcde")


def test_vitkit_file_round_trip(tmp_path):
    model = _randomise(
        VisionTransformer(tiny_config(fc_norm=True, class_token=False, global_pool="avg", extra={"k": 1}))
    )
    path = vitkit.save_pretrained(model, tmp_path / "m.safetensors")
    assert detect_format(path) == "vitkit"
    back = vitkit.load_pretrained(path)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    assert back.cfg == model.cfg and back.cfg.extra == {"k": 1} and not back.training


def test_vitkit_file_round_trip_hybrid_and_folder_target(tmp_path):
    cfg = tiny_config(img_size=32, patch_size=1, backbone_layers=(1, 1), backbone_width=32)
    model = _randomise(VisionTransformer(cfg))
    path = vitkit.save_pretrained(model, tmp_path)  # a folder gets model.safetensors inside
    assert path == tmp_path / "model.safetensors"
    back = vitkit.load_pretrained(tmp_path)  # and the folder loads (a training run folder looks like this)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))


def test_hf_writer_refuses_what_transformers_cannot_represent(tmp_path):
    model = VisionTransformer(tiny_config(class_token=False, global_pool="avg"))
    with pytest.raises(ValueError, match="average pooling"):
        save_hf(model, tmp_path / "hf")
    assert not (tmp_path / "hf" / "config.json").exists()
    conv_stem = VisionTransformer(tiny_config(stem_channels=(8, 16), stem_strides=(2, 2)))
    with pytest.raises(ValueError, match="convolutional stem"):
        save_hf(conv_stem, tmp_path / "hf2")
    back = vitkit.load_pretrained(vitkit.save_pretrained(conv_stem.eval(), tmp_path / "cs.safetensors"))
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():  # vitkit's own file keeps everything, BatchNorm statistics included
        assert torch.equal(back(x), conv_stem(x))


def test_vitkit_training_checkpoint_prefers_ema_weights(tmp_path):
    cfg = tiny_config()
    raw, ema = _randomise(VisionTransformer(cfg)), _randomise(VisionTransformer(cfg))
    state = {"format": "vitkit.train_state", "version": 1, "model_config": cfg.to_dict(),
             "model": raw.state_dict(), "ema": {"module": ema.state_dict(), "updates": 5}, "step": 10}  # fmt: skip
    torch.save(state, tmp_path / "last.pt")
    assert detect_format(tmp_path / "last.pt") == "vitkit_train"
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(vitkit.load_pretrained(tmp_path / "last.pt")(x), ema(x))
