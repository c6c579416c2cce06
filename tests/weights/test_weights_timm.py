"""timm-layout state dicts: the architecture is read from the tensors, heads from the named model; DeiT's
distillation token, fc_norm, no class token and timm's no_embed_class variant; wrapped training checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import vitkit
from helpers import tiny_config
from vitkit import VisionTransformer
from vitkit.weights import CheckpointError, detect_format, save_timm

# timm's names for a depth-1 ViT with a class token, written out from timm's VisionTransformer modules.
TIMM_KEYS = {
    "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
    "head.weight", "head.bias",
    *(f"blocks.0.{m}.{w}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
      for w in ("weight", "bias")),
}  # fmt: skip


def _random_model(cfg) -> VisionTransformer:
    model = VisionTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def _same_logits(a, b, x) -> None:
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.abs().max() > 1e-3
    torch.testing.assert_close(ya, yb, rtol=1e-6, atol=1e-6)


def test_state_dict_names_are_timms():
    assert set(VisionTransformer(tiny_config(depth=1)).state_dict()) == TIMM_KEYS


@pytest.mark.parametrize("suffix", [".pth", ".bin", ".safetensors"])
def test_named_model_with_reduced_depth_and_classes(tmp_path, suffix):
    """A 1-block, 10-class vit_tiny_patch16_224 loads by name alone: depth and classes come from the tensors."""
    src = _random_model(vitkit.get_config("vit_tiny_patch16_224", depth=1, num_classes=10))
    path = tmp_path / f"w{suffix}"
    state = src.state_dict()
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    assert detect_format(path) == "timm"
    model = vitkit.load_pretrained(path, model="vit_tiny_patch16_224")
    assert (model.cfg.depth, model.cfg.num_classes, model.cfg.num_heads) == (1, 10, 3)
    assert model.cfg.mean == (0.5, 0.5, 0.5)  # preprocessing from the registry entry
    _same_logits(src, model, torch.randn(1, 3, 224, 224))


def test_deit_distilled_token_and_second_head(tmp_path):
    src = _random_model(vitkit.get_config("deit_tiny_distilled_patch16_224", depth=1))
    torch.save({"model": src.state_dict()}, tmp_path / "deit.pth")  # DeiT's own checkpoints wrap in 'model'
    model = vitkit.load_pretrained(tmp_path / "deit.pth", model="deit_tiny_distilled_patch16_224")
    assert model.cfg.distilled and model.head_dist is not None
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feats = model.forward_features(x)
        expected = (model.head(feats[:, 0]) + model.head_dist(feats[:, 1])) / 2  # DeiT averages its two heads
        torch.testing.assert_close(model(x), expected)
    _same_logits(src, model, x)


def test_fc_norm_without_class_token_and_ddp_prefix(tmp_path):
    cfg = tiny_config(class_token=False, global_pool="avg", fc_norm=True)
    src = _random_model(cfg)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    model = vitkit.load_pretrained(tmp_path / "ckpt.pth", num_heads=4)
    assert not model.cfg.class_token and model.cfg.fc_norm and model.cfg.global_pool == "avg"
    _same_logits(src, model, torch.randn(2, 3, 16, 16))


def test_hybrid_state_dict_with_resnet_backbone(tmp_path):
    """timm's ResNetV2 names (patch_embed.backbone.stem / stages.{i}.blocks.{j}) fix the hybrid's stages."""
    src = _random_model(tiny_config(img_size=32, patch_size=1, backbone_layers=(2, 1), backbone_width=32))
    save_file(src.state_dict(), str(tmp_path / "r.safetensors"))
    model = vitkit.load_pretrained(tmp_path / "r.safetensors", num_heads=4)
    assert model.cfg.backbone_layers == (2, 1) and model.cfg.backbone_width == 32 and model.cfg.img_size == (32, 32)
    _same_logits(src, model, torch.randn(1, 3, 32, 32))


def test_no_embed_class_position_table(tmp_path):
    """timm's no_embed_class: position embeddings are added to the patches before [class] is prepended."""
    src = _random_model(tiny_config())
    state = src.state_dict()
    patch_pos = torch.randn(1, 16, 32)
    state["pos_embed"] = patch_pos
    save_file(state, str(tmp_path / "w.safetensors"))
    model = vitkit.load_pretrained(tmp_path / "w.safetensors", num_heads=4)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():  # the no_embed_class forward, written out with the source's modules
        tokens = src.patch_embed(x).flatten(2).transpose(1, 2) + patch_pos
        tokens = torch.cat([src.cls_token.expand(2, -1, -1), tokens], dim=1)
        expected = src.head(src.norm(src.blocks(tokens))[:, 0])
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_timm_hub_folder_needs_no_arguments(tmp_path):
    src = _random_model(vitkit.get_config("vit_tiny_patch16_224", depth=1, num_classes=4))
    save_file(src.state_dict(), str(tmp_path / "model.safetensors"))
    hub = {
        "architecture": "vit_tiny_patch16_224.augreg_in21k_ft_in1k", "num_classes": 4,
        "pretrained_cfg": {"mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2], "crop_pct": 0.95},
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(hub))
    assert detect_format(tmp_path) == "timm"
    model = vitkit.load_pretrained(tmp_path)
    assert model.cfg.mean == (0.4, 0.4, 0.4) and model.cfg.crop_pct == 0.95 and model.cfg.num_heads == 3
    _same_logits(src, model, torch.randn(1, 3, 224, 224))


def test_write_timm_and_read_back(tmp_path):
    src = _random_model(tiny_config(distilled=True))
    for name in ("t.pth", "t.safetensors"):
        path = save_timm(src, tmp_path / name)
        assert detect_format(path) == "timm"  # a plain state dict, no vitkit metadata
        _same_logits(src, vitkit.load_pretrained(path, num_heads=4), torch.randn(2, 3, 16, 16))


def test_heads_are_required_and_unknown_features_refused(tmp_path):
    state = _random_model(tiny_config()).state_dict()
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match="does not record the number of attention heads; name the model"):
        vitkit.load_pretrained(tmp_path / "w.safetensors")
    state["blocks.0.ls1.gamma"] = torch.ones(32)
    save_file(state, str(tmp_path / "ls.safetensors"))
    with pytest.raises(CheckpointError, match=r"layer scale.*blocks.0.ls1.gamma"):
        vitkit.load_pretrained(tmp_path / "ls.safetensors", num_heads=4)
