"""peft interop: a LoRA adapter saved by Hugging Face peft for a transformers ViTForImageClassification (random
weights, saved to a tmp folder) loads onto the vitkit model converted from the same base and gives peft's logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


def _hf_and_peft(tmp_path: Path, rslora: bool, targets: str) -> tuple[Path, Path, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16,
        patch_size=4, num_labels=3,
    )  # fmt: skip
    model = transformers.ViTForImageClassification(cfg).eval()
    model.save_pretrained(tmp_path / "hf")
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    new = "q_proj" in names  # transformers >= 5 names the modules q_proj/k_proj/v_proj/o_proj, mlp.fc1/fc2
    wanted = {
        "attn": ["q_proj", "k_proj", "v_proj", "o_proj"] if new else ["query", "key", "value", "dense"],
        "qv+mlp": ["q_proj", "v_proj", "fc1", "fc2"] if new else ["query", "value", "intermediate.dense"],
        "qv+patch": ["q_proj", "v_proj", "projection"] if new else ["query", "value", "projection"],
    }[targets]
    lora = peft.LoraConfig(r=4, lora_alpha=6, target_modules=wanted, modules_to_save=["classifier"], use_rslora=rslora)
    wrapped = peft.get_peft_model(model, lora)
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.normal_(std=0.3)  # B starts at zero: make the adapter matter
    wrapped.save_pretrained(tmp_path / "peft")
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = wrapped.eval()(pixel_values=x).logits
        base = wrapped.get_base_model()
        with wrapped.disable_adapter():
            plain = base(pixel_values=x).logits
    return tmp_path / "hf", tmp_path / "peft", x, (expected, plain)


@pytest.mark.parametrize("rslora, targets", [(False, "attn"), (True, "qv+mlp"), (False, "qv+patch")])
def test_peft_lora_gives_peft_logits(tmp_path: Path, rslora: bool, targets: str) -> None:
    from vitkit import load_pretrained

    hf, folder, x, (expected, plain) = _hf_and_peft(tmp_path, rslora, targets)
    model = load_pretrained(hf, adapters=folder)
    with torch.no_grad():
        got = model(x)
    assert not torch.allclose(expected, plain, atol=1e-3)  # the adapter changes the logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    if "patch" in targets:  # peft's conv LoRA on the patch projection became vitkit's stem LoRA
        from vitkit.adapters.modules import LoRAConv2d

        assert isinstance(model.patch_embed.proj, LoRAConv2d) and model.patch_embed.proj.lora_B.abs().sum() > 0
    from vitkit.adapters import merge_adapters

    with torch.no_grad():
        merged = merge_adapters(model)(x)  # folded into plain layers, as `vitkit export --merge-adapters` writes
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=0)
