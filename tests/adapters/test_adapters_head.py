"""The head adapter (``adapter.head_adapter``: encoder -> adapter -> head): the classifier reads
h + up(GELU(down(h))) of the pooled features, against a float64 computation from the module's weights, for class-token
and pooled ViTs, both heads of a DeiT and Swin; models without such a head are refused; and the ViT-B/16
anti-spoofing recipe trains exactly its adapters and head, counted by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import tiny_config
from vitkit import VisionTransformer
from vitkit.adapters import AdapterConfig, add_adapters
from vitkit.families import build_model

D = 32  # tiny_config's width


def _x(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _perturb(adapter: nn.Module) -> None:
    """Give the zero-initialised up-projection (and everything else) values that matter."""
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in adapter.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def _adapter64(h: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
    """h + up(GELU(down(h))) in float64, GELU written out as x * Phi(x)."""
    w = {k: v.detach().double() for k, v in adapter.state_dict().items()}
    z = h @ w["down.weight"].T + w["down.bias"]
    z = z * 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return h + z @ w["up.weight"].T + w["up.bias"]


def _linear64(h: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return h @ layer.weight.detach().double().T + layer.bias.detach().double()


@pytest.mark.parametrize(
    "changes",
    [{}, dict(class_token=False, global_pool="avg", fc_norm=True)],
    ids=["class-token", "avg-pool+fc_norm"],
)
def test_head_reads_the_adapted_pooled_features(changes: dict) -> None:
    torch.manual_seed(0)
    model = VisionTransformer(tiny_config(**changes)).eval()
    x = _x()
    with torch.no_grad():
        before = model(x)
        tokens = model.forward_features(x).double()  # (B, T, D), not touched by the head adapter
        add_adapters(model, AdapterConfig(method="bottleneck", bottleneck=4, head_adapter=6))
        assert torch.equal(model(x), before)  # up starts at zero: nothing changes
        _perturb(model.head_adapter)
        got = model(x).double()
    if model.cfg.class_token:
        h = tokens[:, 0]
    else:  # mean of the patch tokens, then the LayerNorm timm puts after pooling
        h = tokens.mean(dim=1)
        norm = model.fc_norm
        h = F.layer_norm(h, (D,), norm.weight.double(), norm.bias.double(), norm.eps)
    expected = _linear64(_adapter64(h, model.head_adapter), model.head)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert model.head_adapter.down.weight.shape == (6, D)


def test_both_deit_heads_read_the_one_head_adapter() -> None:
    torch.manual_seed(0)
    model = VisionTransformer(tiny_config(distilled=True)).eval()
    x = _x()
    with torch.no_grad():
        tokens = model.forward_features(x).double()
        add_adapters(model, AdapterConfig(method="head", head_adapter=4))
        _perturb(model.head_adapter)
        got = model(x).double()
    cls = _linear64(_adapter64(tokens[:, 0], model.head_adapter), model.head)
    dist = _linear64(_adapter64(tokens[:, 1], model.head_adapter), model.head_dist)
    torch.testing.assert_close(got, (cls + dist) / 2, atol=1e-5, rtol=1e-5)


def test_swin_head_reads_the_adapted_mean_of_its_last_map() -> None:
    swin = pytest.importorskip("vitkit.config.swin")
    cfg = swin.SwinConfig(
        img_size=16, patch_size=2, embed_dim=16, depths=(1, 2), num_heads=(2, 4), window_size=4, num_classes=3
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    x = _x(2)
    with torch.no_grad():
        feats = model.forward_features(x).double()  # (B, H, W, C)
        add_adapters(model, AdapterConfig(method="lora", rank=2, head_adapter=4))
        _perturb(model.head_adapter)
        got = model(x).double()
    expected = _linear64(_adapter64(feats.mean(dim=(1, 2)), model.head_adapter), model.head.fc)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_only_the_head_adapter_and_head_train_with_method_head() -> None:
    model = VisionTransformer(tiny_config(num_classes=3))
    report = add_adapters(model, AdapterConfig(method="head", head_adapter=8))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"} | {f"head_adapter.{m}.{k}" for m in ("down", "up")
                                                         for k in ("weight", "bias")}  # fmt: skip
    assert report.trainable == (2 * D * 8 + 8 + D) + (D * 3 + 3)


class _NoClassifier(nn.Module):
    """Transformer blocks but a head that is a mere container (never called), as ResNetV2's ``head``."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = VisionTransformer(tiny_config()).blocks
        self.head = nn.Module()
        self.num_features = D


def test_a_model_whose_head_is_not_called_on_pooled_features_is_refused() -> None:
    with pytest.raises(ValueError, match="head_adapter goes in front of the classifier.*set adapter.head_adapter: 0"):
        add_adapters(_NoClassifier(), AdapterConfig(method="lora", rank=2, head_adapter=4))


def test_b16_spoof_recipe_builds_and_trains_exactly_its_adapters_and_head() -> None:
    """The recipe names the ImageNet-21k hub weights; built without them (no download here), the adapted model's
    trainable parameters are the 12 block bottlenecks, the head adapter and the 2-class head, as counted by hand."""
    from vitkit.train import load_recipe
    from vitkit.train.run import build_model as build_recipe_model
    from vitkit.weights.hub import is_hub_name

    recipe = load_recipe("adapter_spoof_b16_bottleneck")
    assert recipe.model.pretrained == "timm/vit_base_patch16_224.augreg_in21k" and is_hub_name(recipe.model.pretrained)
    assert recipe.model.name == "vit_base_patch16_224" and recipe.data.img_size == (224, 224)
    recipe = load_recipe("adapter_spoof_b16_bottleneck", ["model.pretrained=null"])
    model = build_recipe_model(recipe, {"classes": ["live", "spoof"]})
    report = add_adapters(model, recipe.adapter)
    width, depth, b, classes = 768, 12, 64, 2  # ViT-B/16 (Dosovitskiy et al. 2020, Table 1); the recipe's widths
    bottleneck = (width * b + b) + (b * width + width)  # down (weight, bias) + up (weight, bias)
    expected = depth * bottleneck + bottleneck + (width * classes + classes)
    assert report.trainable == expected == 1_290_306
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapters = {f"{m}.{ud}.{k}" for m in [f"blocks.{i}.adapter" for i in range(depth)] + ["head_adapter"]
                for ud in ("down", "up") for k in ("weight", "bias")}  # fmt: skip
    assert trainable == adapters | {"head.weight", "head.bias"}


def test_cli_eval_reads_the_head_adapter_from_the_adapter_file(tmp_path, capsys) -> None:
    """`vitkit eval --adapters`: a head adapter whose output is a large shift towards class 2 (down zero, so
    up(GELU(0)) = up.bias; the head the identity on the first four features) makes every prediction class 2, so
    top-1 is that class's share of the test split, 2 of 8, exactly when the adapter file's head adapter was used."""
    import json

    from train_data import make_image_folder
    from vitkit import load_pretrained, save_pretrained
    from vitkit.adapters import save_adapters
    from vitkit.cli.main import main

    data = make_image_folder(tmp_path / "data", train_per_class=1, test_per_class=2)
    base = save_pretrained(VisionTransformer(tiny_config()), tmp_path / "base.safetensors")
    model = load_pretrained(base, num_classes=4)
    add_adapters(model, AdapterConfig(method="bottleneck", bottleneck=4, head_adapter=4))
    with torch.no_grad():
        model.head.weight.copy_(torch.eye(4, D))
        model.head.bias.zero_()
        model.head_adapter.down.weight.zero_()
        model.head_adapter.up.bias.zero_()
        model.head_adapter.up.bias[2] = 1e3
    adapters = save_adapters(model, tmp_path / "a.safetensors")
    common = ["eval", "--data", str(data), "--workers", "0", "--device", "cpu", "--json", "--checkpoint", str(base)]
    assert main([*common, "--adapters", str(adapters), "--out", str(tmp_path / "r")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["top1"] == 0.25 and result["num_samples"] == 8
    assert [result["per_class"][c] for c in result["classes"]] == [0.0, 0.0, 1.0, 0.0]
