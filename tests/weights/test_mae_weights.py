"""MAE checkpoints: official models_mae .pth, vitkit files, timm ``*.mae`` encoders, and the encoder export."""

from __future__ import annotations

import argparse
import logging

import pytest
import torch

from mae_helpers import hf_mae, official_state, tiny_mae_config
from vitkit.models.mae import MaskedAutoencoder
from vitkit.models.vit import VisionTransformer
from vitkit.registry import MODEL_CONFIGS
from vitkit.weights import CheckpointError, UnsafeCheckpointError, detect_format, load_pretrained, save_pretrained
from vitkit.weights.io import write_safetensors
from vitkit.weights.mae import export_encoder


@pytest.fixture
def tiny_name(monkeypatch) -> str:
    """A registered tiny MAE (heads are not stored in a state dict); LayerNorm eps as transformers'."""
    monkeypatch.setitem(MODEL_CONFIGS, "mae_test_tiny", tiny_mae_config(norm_eps=1e-12))
    return "mae_test_tiny"


def _outputs(model, x, noise):
    with torch.no_grad():
        if isinstance(model, MaskedAutoencoder):
            return model(x, noise=noise)
        ref = model(pixel_values=x, noise=noise)
        return ref.loss, ref.logits, ref.mask


def _assert_same(a, b):
    for got, want in zip(a, b, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_official_pth_matches_transformers(tmp_path, tiny_name):
    hf = hf_mae()
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": official_state(hf)}, path)  # the released files' layout: {"model": state_dict}
    assert detect_format(path) == "mae"
    model = load_pretrained(path, tiny_name)
    assert isinstance(model, MaskedAutoencoder) and model.cfg.decoder_depth == 2
    x, noise = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    _assert_same(_outputs(model, x, noise), _outputs(hf, x, noise))


def test_official_pth_heads_from_the_registry_by_size(tmp_path):
    state = official_state(hf_mae())
    torch.save({"model": state}, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="does not record attention heads.*model='mae_vit_base_patch16'"):
        load_pretrained(tmp_path / "m.pth")


def test_official_pth_with_pickled_args_is_refused(tmp_path):
    path = tmp_path / "checkpoint-799.pth"  # main_pretrain.py also saves its argparse Namespace
    torch.save({"model": official_state(hf_mae()), "args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(UnsafeCheckpointError, match="refusing to unpickle"):
        load_pretrained(path)


def test_official_pth_with_a_learned_table_is_refused(tmp_path, tiny_name):
    state = official_state(hf_mae())
    state["pos_embed"] = state["pos_embed"] + 0.1
    torch.save({"model": state}, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="'pos_embed' is not the fixed 2D sin-cos table"):
        load_pretrained(tmp_path / "m.pth", tiny_name)


def test_vitkit_roundtrip(tmp_path):
    model = MaskedAutoencoder(tiny_mae_config(mask_ratio=0.5, norm_pix_loss=False)).eval()
    back = load_pretrained(save_pretrained(model, tmp_path / "mae.safetensors"))
    assert isinstance(back, MaskedAutoencoder) and back.cfg == model.cfg
    x, noise = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    _assert_same(_outputs(back, x, noise), _outputs(model, x, noise))


def test_exported_encoder_is_a_finetunable_vit(tmp_path):
    model = MaskedAutoencoder(tiny_mae_config()).eval()
    path = save_pretrained(export_encoder(model), tmp_path / "encoder.safetensors")
    vit = load_pretrained(path, num_classes=7, drop_path_rate=0.1)  # what `vitkit finetune` does with it
    assert isinstance(vit, VisionTransformer) and vit.cfg.global_pool == "avg" and vit.cfg.fc_norm
    assert torch.all(vit.head.weight == 0)  # a fresh zero-initialised head (paper Sec. 3.2)
    torch.testing.assert_close(vit.blocks[0].attn.qkv.weight, model.encoder.blocks[0].attn.qkv.weight)
    torch.testing.assert_close(vit.fc_norm.weight, model.encoder.norm.weight)


def test_whole_mae_where_an_encoder_is_expected(tmp_path, caplog):
    model = MaskedAutoencoder(tiny_mae_config()).eval()
    path = save_pretrained(model, tmp_path / "mae.safetensors")
    with caplog.at_level(logging.WARNING, logger="vitkit.weights"):
        vit = load_pretrained(path, num_classes=3)
    notes = [r.getMessage() for r in caplog.records if "whole MAE" in r.getMessage()]
    assert len(notes) == 1 and "taking its encoder" in notes[0] and "\n" not in notes[0]
    assert isinstance(vit, VisionTransformer) and vit.cfg.num_classes == 3
    reference = export_encoder(model)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(vit.forward_features(x), reference.forward_features(x))


def test_hf_folder_as_encoder(tmp_path):
    hf = hf_mae()
    hf.save_pretrained(tmp_path)
    vit = load_pretrained(tmp_path, num_classes=4)
    assert isinstance(vit, VisionTransformer) and vit.cfg.norm_eps == 1e-12 and vit.cfg.num_classes == 4
    # The reference: transformers' own encoder with nothing masked and increasing noise (no shuffle).
    hf.config.mask_ratio = 0.0
    x, noise = torch.randn(2, 3, 16, 16), torch.arange(16.0).expand(2, -1)
    with torch.no_grad():
        out = hf.vit(x, noise=noise, output_hidden_states=True)
        # average pooling moves the final norm after the pooling (fc_norm): the tokens come before it
        torch.testing.assert_close(vit.forward_features(x), out.hidden_states[-1], rtol=1e-5, atol=1e-5)
        pooled = torch.nn.functional.layer_norm(out.hidden_states[-1][:, 1:].mean(1), (32,), hf.vit.layernorm.weight,
                                                hf.vit.layernorm.bias, eps=1e-12)  # fmt: skip
        torch.testing.assert_close(vit.forward_head(vit.forward_features(x), pre_logits=True), pooled)


def test_timm_mae_encoder(tmp_path):
    """timm's ``vit_*_patch16_224.mae``: the encoder alone in timm names (class token, sin-cos pos_embed, norm)."""
    model = MaskedAutoencoder(tiny_mae_config()).eval()
    timm_state = export_encoder(model, global_pool="token").state_dict()
    assert "pos_embed" in timm_state and not any(k.startswith("head") for k in timm_state)
    write_safetensors(timm_state, tmp_path / "model.safetensors")  # a bare timm file, no vitkit metadata
    vit = load_pretrained(tmp_path / "model.safetensors", num_heads=2)
    assert detect_format(tmp_path / "model.safetensors") == "timm" and vit.cfg.num_classes == 0
    x, noise = torch.randn(2, 3, 16, 16), torch.arange(16.0).expand(2, -1)  # increasing noise: no shuffle
    with torch.no_grad():
        latent, _, _ = model.forward_encoder(x, 0.0, noise)
        torch.testing.assert_close(vit.forward_features(x), latent, rtol=0, atol=1e-5)


def test_encoder_only_file_finetunes_with_average_pooling(tmp_path):
    """The official mae_pretrain_vit_*.pth hold the encoder alone (timm names, class-token head, final norm); MAE
    fine-tunes them with average pooling, the final norm moving after the pooling (fc_norm)."""
    model = MaskedAutoencoder(tiny_mae_config()).eval()
    state = export_encoder(model, global_pool="token").state_dict()
    torch.save({"model": state}, tmp_path / "mae_pretrain_vit_tiny.pth")
    vit = load_pretrained(tmp_path / "mae_pretrain_vit_tiny.pth", num_heads=2, num_classes=3, global_pool="avg",
                          fc_norm=True)  # fmt: skip
    reference = export_encoder(model, global_pool="avg")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(vit.forward_head(vit.forward_features(x), pre_logits=True),
                                   reference.forward_head(reference.forward_features(x), pre_logits=True))  # fmt: skip
