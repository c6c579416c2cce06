"""The ViT with pos_embed='sincos1d' (Vaswani's fixed table) and 'relative' (BEiT's bias on the attention logits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import tiny_config
from pos_embed_helpers import reference_sincos_1d, reference_vit
from vitkit import VisionTransformer, ViTConfig
from vitkit.models.features import FeatureExtractor


def _randomise_bias_tables(model: VisionTransformer, std: float = 1.0) -> None:
    """Initial tables are tiny (std 0.02); large ones make a missing bias visible in the logits."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.normal_(0, std)


# ------------------------------------------------------------------------------------------------ sincos1d
def test_sincos1d_is_a_fixed_table_over_the_flattened_patches():
    model = VisionTransformer(tiny_config(pos_embed="sincos1d"))
    assert "pos_embed" not in dict(model.named_parameters()) and "pos_embed" not in model.state_dict()
    table = model.position_table((4, 4))[0].double().numpy()  # (1 + 16, D)
    np.testing.assert_array_equal(table[0], np.zeros(32))  # [class] gets no position, as with sincos2d
    np.testing.assert_allclose(table[1:], reference_sincos_1d(16, 32), atol=1e-7)
    other = model.position_table((6, 5))[0, 1:].double().numpy()  # another grid: recomputed, not interpolated
    np.testing.assert_allclose(other, reference_sincos_1d(30, 32), atol=1e-7)


def test_sincos1d_model_trains_one_step():
    model = VisionTransformer(tiny_config(pos_embed="sincos1d"))
    table = model.pos_embed.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.nn.functional.cross_entropy(model(x), y) < loss
    assert torch.equal(model.pos_embed, table)


def test_config_validates_the_new_kinds():
    assert ViTConfig(pos_embed="relative").pos_embed == "relative"
    with pytest.raises(ValueError, match="'sincos1d', 'sincos2d', 'relative', 'none'"):
        ViTConfig(pos_embed="rope")
    with pytest.raises(ValueError, match="embed_dim must be even"):
        ViTConfig(pos_embed="sincos1d", embed_dim=33, num_heads=3)


# ------------------------------------------------------------------------------------------------ relative
def test_relative_model_matches_a_float64_reference_forward():
    model = VisionTransformer(tiny_config(pos_embed="relative")).eval()
    _randomise_bias_tables(model)
    assert model.position_table((4, 4)) is None  # no absolute embedding
    x = torch.randn(2, 3, 16, 16)
    expected, maps = reference_vit(model, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x).double(), expected, atol=1e-6, rtol=1e-5)
        captured = model.get_attention_maps(x)  # the visualisation path: explicit softmax, bias included
    for got, want in zip(captured, maps):
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_relative_tables_are_per_block_decay_free_and_learn():
    model = VisionTransformer(tiny_config(pos_embed="relative", distilled=True))
    names = [n for n, _ in model.named_parameters() if "relative" in n]
    assert names == [f"blocks.{i}.attn.relative_position_bias_table" for i in range(2)]
    assert model.blocks[0].attn.relative_position_bias_table.shape == (7 * 7 + 3, 4)
    assert set(names) <= model.no_weight_decay()
    assert "blocks.0.attn.relative_position_index" not in model.state_dict()  # fixed by the grid
    model.forward_features(torch.randn(2, 3, 16, 16)).square().sum().backward()  # every token's output counts
    for name in names:  # every offset and all three class entries receive gradients
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and (grad.abs().sum(dim=1) > 0).all(), name


def test_relative_model_at_another_grid_and_with_grad_checkpointing():
    model = VisionTransformer(tiny_config(pos_embed="relative", dynamic_img_size=True))
    out = model(torch.randn(2, 3, 24, 20))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    bias = model.position_bias((6, 5))
    assert bias.shape == (2, 4, 31, 31)
    model.set_grad_checkpointing()
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert model.blocks[1].attn.relative_position_bias_table.grad is not None


@pytest.mark.parametrize("kind", ["sincos1d", "relative"])
def test_feature_maps_at_another_image_size(kind):
    """features_only backbones (segmentation necks) pass the token grid to every block."""
    model = VisionTransformer(tiny_config(pos_embed=kind, dynamic_img_size=True)).eval()
    maps = FeatureExtractor(model, out_indices=[0, 1])(torch.randn(1, 3, 24, 32))
    assert [tuple(m.shape) for m in maps] == [(1, 32, 6, 8)] * 2
