"""Parity with an independent implementation: Hugging Face transformers' ViT, random weights, float32."""

from __future__ import annotations

import pytest
import torch

from vitkit import VisionTransformer, ViTConfig

transformers = pytest.importorskip("transformers")


def _hf_to_vitkit(hf_state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """Test-side key mapping, written from transformers' own module names (q/k/v fused into qkv)."""
    out = {
        "cls_token": hf_state["vit.embeddings.cls_token"],
        "pos_embed": hf_state["vit.embeddings.position_embeddings"],
        "patch_embed.proj.weight": hf_state["vit.embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf_state["vit.embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf_state["vit.layernorm.weight"],
        "norm.bias": hf_state["vit.layernorm.bias"],
        "head.weight": hf_state["classifier.weight"],
        "head.bias": hf_state["classifier.bias"],
    }
    for i in range(depth):
        src, dst = f"vit.layers.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.qkv.{kind}"] = torch.cat([hf_state[src + f"attention.{p}_proj.{kind}"] for p in "qkv"])
            out[dst + f"attn.proj.{kind}"] = hf_state[src + f"attention.o_proj.{kind}"]
            out[dst + f"norm1.{kind}"] = hf_state[src + f"layernorm_before.{kind}"]
            out[dst + f"norm2.{kind}"] = hf_state[src + f"layernorm_after.{kind}"]
            out[dst + f"mlp.fc1.{kind}"] = hf_state[src + f"mlp.fc1.{kind}"]
            out[dst + f"mlp.fc2.{kind}"] = hf_state[src + f"mlp.fc2.{kind}"]
    return out


@pytest.mark.parametrize(
    "width, depth, heads, mlp, img, patch",
    [(64, 2, 4, 256, 32, 8), pytest.param(768, 12, 12, 3072, 224, 16, marks=pytest.mark.slow)],  # base: B/16
    ids=["tiny", "base"],
)
def test_logits_match_transformers(width, depth, heads, mlp, img, patch):
    hf_cfg = transformers.ViTConfig(
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=mlp,
        image_size=img,
        patch_size=patch,
        num_labels=10,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
    )
    hf = transformers.ViTForImageClassification(hf_cfg).eval()
    with torch.no_grad():  # HF zero-inits biases and the class token; randomise them so the check can fail.
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "cls_token" in name:
                p.normal_(0, 0.02)
    cfg = ViTConfig(
        img_size=img, patch_size=patch, embed_dim=width, depth=depth, num_heads=heads, mlp_dim=mlp, num_classes=10
    )
    model = VisionTransformer(cfg).eval()
    missing = model.load_state_dict(_hf_to_vitkit(hf.state_dict(), depth), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    x = torch.randn(2, 3, img, img)
    with torch.no_grad():
        expected = hf(pixel_values=x).logits
        got = model(x)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
