"""The ViT of the paper: shapes, equations, options and errors, checked against independent computations."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import tiny_config
from vitkit import VisionTransformer, resample_pos_embed
from vitkit.layers.pos_embed import sincos_2d


def test_forward_shapes_and_feature_api():
    model = VisionTransformer(tiny_config()).eval()
    x = torch.randn(3, 3, 16, 16)
    feats = model.forward_features(x)
    assert feats.shape == (3, 1 + 16, 32)
    assert model.forward_head(feats, pre_logits=True).shape == (3, 32)
    assert model(x).shape == (3, 5)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    inter = model.get_intermediate_layers(x, n=2)
    assert len(inter) == 2 and inter[-1].shape == (3, 17, 32)
    torch.testing.assert_close(model.norm(inter[-1]), feats)
    maps = model.get_intermediate_layers(x, n=[0], reshape=True)
    assert maps[0].shape == (3, 32, 4, 4)


def test_conv_patch_embedding_equals_flatten_and_matmul():
    """Eq. 1: a stride-P convolution is x_p E with patches flattened in (C, P, P) order."""
    model = VisionTransformer(tiny_config(in_chans=3)).eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    proj = model.patch_embed.proj.double()
    B, C, P = 2, 3, 4
    patches = x.reshape(B, C, 4, P, 4, P).permute(0, 2, 4, 1, 3, 5).reshape(B, 16, C * P * P)  # (B, N, P^2 C)
    E = proj.weight.reshape(32, -1).T  # (P^2 C, D)
    expected = patches @ E + proj.bias
    got = proj(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_encoder_is_permutation_equivariant_without_position_embeddings():
    model = VisionTransformer(tiny_config(pos_embed="none")).eval()
    x = torch.randn(1, 3, 16, 16)
    perm = torch.randperm(16)
    # Rearrange the 4x4 grid of 4x4-pixel patches in the image itself.
    blocks = x.reshape(1, 3, 4, 4, 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(1, 16, 3, 4, 4)
    shuffled = blocks[:, perm].reshape(1, 4, 4, 3, 4, 4).permute(0, 3, 1, 4, 2, 5).reshape(1, 3, 16, 16)
    out, out_shuffled = model.forward_features(x), model.forward_features(shuffled)
    torch.testing.assert_close(out_shuffled[:, 1:], out[:, 1:][:, perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_shuffled[:, 0], out[:, 0], rtol=1e-5, atol=1e-5)


def test_position_embeddings_break_equivariance():
    """The check above must be able to fail: with learned position embeddings the outputs differ."""
    model = VisionTransformer(tiny_config()).eval()
    x = torch.randn(1, 3, 16, 16)
    flipped = x.flip(-1)
    assert not torch.allclose(model(x), model(flipped), atol=1e-4)


def test_attention_rows_sum_to_one_and_match_fused_path():
    model = VisionTransformer(tiny_config()).eval()
    x = torch.randn(2, 3, 16, 16)
    maps = model.get_attention_maps(x)
    assert len(maps) == 2
    for attn in maps:
        assert attn.shape == (2, 4, 17, 17)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, 17))
    # The explicit path and scaled_dot_product_attention give the same block output.
    tokens = model.embed(x)
    block = model.blocks[0]
    torch.testing.assert_close(block(tokens, return_attention=True)[0], block(tokens), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pre_norm", [True, False])
def test_block_matches_torch_transformer_encoder_layer(pre_norm):
    """One encoder block against PyTorch's own TransformerEncoderLayer, in float64."""
    cfg = tiny_config(pre_norm=pre_norm)
    block = VisionTransformer(cfg).blocks[0].double().eval()
    ref = nn.TransformerEncoderLayer(
        32,
        4,
        dim_feedforward=128,
        dropout=0.0,
        activation="gelu",
        layer_norm_eps=cfg.norm_eps,
        batch_first=True,
        norm_first=pre_norm,
        dtype=torch.float64,
    ).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(block.attn.proj.weight)
        ref.self_attn.out_proj.bias.copy_(block.attn.proj.bias)
        for mine, theirs in [
            (block.mlp.fc1, ref.linear1),
            (block.mlp.fc2, ref.linear2),
            (block.norm1, ref.norm1),
            (block.norm2, ref.norm2),
        ]:
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
            if isinstance(mine, nn.LayerNorm):  # LayerNorm starts at (1, 0): perturb so the check can fail
                mine.weight.add_(0.1 * torch.randn_like(mine.weight))
                theirs.weight.copy_(mine.weight)
    x = torch.randn(2, 17, 32, dtype=torch.float64)
    torch.testing.assert_close(block(x), ref(x), rtol=1e-10, atol=1e-10)


def test_gelu_variants():
    exact = VisionTransformer(tiny_config()).blocks[0].mlp.act
    tanh = VisionTransformer(tiny_config(act_layer="gelu_tanh")).blocks[0].mlp.act
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    torch.testing.assert_close(exact(x), 0.5 * x * (1 + torch.erf(x / 2**0.5)))
    torch.testing.assert_close(tanh(x), 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3))))


def test_every_parameter_receives_a_gradient():
    for changes in [
        {},
        {"global_pool": "avg", "class_token": False},
        {"representation_size": 16},
        {"pos_embed": "learned2d"},
        {"pos_embed": "relative"},
        {"distilled": True},
        {"fc_norm": True, "global_pool": "avg"},
    ]:
        model = VisionTransformer(tiny_config(**changes))
        out = model(torch.randn(2, 3, 16, 16))
        out.square().sum().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{changes}: no gradient for {name}"


def test_global_average_pooling_without_class_token():
    model = VisionTransformer(tiny_config(global_pool="avg", class_token=False)).eval()
    assert model.cls_token is None and model.pos_embed.shape == (1, 16, 32)
    x = torch.randn(2, 3, 16, 16)
    feats = model.forward_features(x)
    assert feats.shape == (2, 16, 32)
    torch.testing.assert_close(model.forward_head(feats, pre_logits=True), feats.mean(1))


def test_fc_norm_moves_the_final_norm_after_pooling():
    model = VisionTransformer(tiny_config(global_pool="avg", fc_norm=True)).eval()
    assert isinstance(model.norm, nn.Identity) and isinstance(model.fc_norm, nn.LayerNorm)
    tokens = model.forward_features(torch.randn(2, 3, 16, 16))
    torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), model.fc_norm(tokens[:, 1:].mean(1)))


def test_representation_size_adds_tanh_pre_logits():
    model = VisionTransformer(tiny_config(representation_size=24)).eval()
    feats = model.forward_features(torch.randn(2, 3, 16, 16))
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, 24) and pre.abs().max() < 1
    torch.testing.assert_close(pre, torch.tanh(model.pre_logits.fc(feats[:, 0])))
    assert model.head.in_features == 24


def test_distilled_token_and_heads():
    model = VisionTransformer(tiny_config(distilled=True)).eval()
    feats = model.forward_features(torch.randn(2, 3, 16, 16))
    assert feats.shape == (2, 18, 32)
    expected = (model.head(feats[:, 0]) + model.head_dist(feats[:, 1])) / 2
    torch.testing.assert_close(model.forward_head(feats), expected)
    cls_logits, dist_logits = model(torch.randn(2, 3, 16, 16), distillation=True)  # what DeiT's objective asks
    assert cls_logits.shape == dist_logits.shape == (2, 5)
    plain = VisionTransformer(tiny_config())  # no distillation head: the keyword changes nothing
    assert plain(torch.randn(2, 3, 16, 16), distillation=True).shape == (2, 5)


def test_learned2d_concatenates_row_and_column_embeddings():
    model = VisionTransformer(tiny_config(pos_embed="learned2d"))
    table = model.position_table((4, 4))[0, 1:].reshape(4, 4, 32)
    torch.testing.assert_close(table[2, 3, :16], model.pos_embed_row[0, 2])
    torch.testing.assert_close(table[2, 3, 16:], model.pos_embed_col[0, 3])


def test_sincos2d_is_fixed_and_translation_invariant():
    model = VisionTransformer(tiny_config(pos_embed="sincos2d"))
    assert "pos_embed" not in dict(model.named_parameters()) and "pos_embed" not in model.state_dict()
    table = sincos_2d((6, 6), 64).double().reshape(6, 6, 64)
    # A sin-cos table's dot products depend only on the offset between positions.
    d1 = (table[1, 2] * table[3, 3]).sum()
    d2 = (table[2, 0] * table[4, 1]).sum()
    torch.testing.assert_close(d1, d2)
    assert table.abs().max() <= 1


def test_no_qkv_bias():
    model = VisionTransformer(tiny_config(qkv_bias=False))
    assert model.blocks[0].attn.qkv.bias is None


def test_dropout_and_stochastic_depth_only_in_training():
    model = VisionTransformer(tiny_config(drop_rate=0.3, attn_drop_rate=0.3, proj_drop_rate=0.1, drop_path_rate=0.5))
    assert model.blocks[0].drop_path1.p == 0.0 and model.blocks[-1].drop_path1.p == 0.5
    x = torch.randn(4, 3, 16, 16)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    torch.testing.assert_close(model(x), model(x))


def test_non_square_images_and_other_channel_counts():
    model = VisionTransformer(tiny_config(img_size=(8, 20), in_chans=1)).eval()
    assert model.pos_embed.shape == (1, 1 + 2 * 5, 32)
    assert model(torch.randn(2, 1, 8, 20)).shape == (2, 5)


def test_zero_head_and_reset_classifier():
    model = VisionTransformer(tiny_config(zero_head=True))
    assert model.head.weight.abs().sum() == 0
    model = VisionTransformer(tiny_config())
    assert model.head.weight.abs().sum() > 0
    cfg = model.cfg
    model.reset_classifier(7)
    assert model.head.out_features == 7 and model.head.weight.abs().sum() == 0 and model.num_classes == 7
    assert model.cfg is cfg and cfg.num_classes == 5  # the config is never changed after construction


def test_initialisation_statistics():
    model = VisionTransformer(tiny_config(embed_dim=256, num_heads=4, mlp_dim=1024, img_size=64))
    pos = model.pos_embed.detach()
    assert 0.015 < pos.std() < 0.025 and pos.abs().max() <= 0.04 + 1e-6  # truncated at 2 std
    assert model.cls_token.abs().max() <= 0.04 + 1e-6
    assert model.blocks[0].mlp.fc1.bias.abs().sum() == 0


def test_resample_pos_embed_identity_and_linear_ramp():
    posemb = torch.randn(1, 1 + 36, 8)
    assert resample_pos_embed(posemb, (6, 6)) is posemb
    # A table that is linear in the row index stays linear under bilinear resampling (interior points).
    rows = torch.arange(6, dtype=torch.float32).repeat_interleave(6)
    table = torch.cat([torch.full((1, 1, 1), 7.0), rows.reshape(1, 36, 1)], dim=1)
    out = resample_pos_embed(table, (12, 12), interpolation="bilinear", antialias=False)
    assert out.shape == (1, 145, 1) and out[0, 0, 0] == 7.0
    grid = out[0, 1:, 0].reshape(12, 12)
    expected = (torch.arange(12, dtype=torch.float32) + 0.5) / 2 - 0.5
    torch.testing.assert_close(grid[1:-1, 5], expected[1:-1])


def test_dynamic_image_size_resamples_at_forward():
    model = VisionTransformer(tiny_config(dynamic_img_size=True)).eval()
    x = torch.randn(1, 3, 24, 32)
    out = model.forward_features(x)
    assert out.shape == (1, 1 + 6 * 8, 32)
    # The same as a model built at that size whose table was resampled once.
    fixed = VisionTransformer(tiny_config(img_size=(24, 32))).eval()
    state = model.state_dict()
    state["pos_embed"] = resample_pos_embed(state["pos_embed"], (6, 8), (4, 4))
    fixed.load_state_dict(state)
    torch.testing.assert_close(fixed.forward_features(x), out)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((1, 3, 18, 16), "not divisible by the patch size 4x4"),
        ((1, 1, 16, 16), "expected 3 input channels"),
        ((3, 16, 16), "unsqueeze"),
        ((1, 3, 24, 24), "model expects 16x16 images, got 24x24"),
    ],
)
def test_bad_input_names_the_problem(shape, match):
    model = VisionTransformer(tiny_config())
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def test_config_errors():
    with pytest.raises(ValueError, match="not divisible by patch size"):
        tiny_config(img_size=18)
    with pytest.raises(ValueError, match="num_heads"):
        tiny_config(num_heads=5)
    with pytest.raises(ValueError, match="class_token"):
        tiny_config(class_token=False)
    with pytest.raises(TypeError, match="unknown ViTConfig field"):
        tiny_config().replace(emb_dim=3)


def test_bf16_autocast_forward():
    model = VisionTransformer(tiny_config()).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), model(x), rtol=0.05, atol=0.05)
    assert F.cosine_similarity(low.float().flatten(), model(x).flatten(), dim=0) > 0.99


def test_conv_stem_keeps_the_patch_grid():
    model = VisionTransformer(tiny_config(stem_channels=(8, 16), stem_strides=(2, 2))).eval()
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    assert model.forward_features(torch.randn(1, 3, 16, 16)).shape == (1, 17, 32)
    with pytest.raises(ValueError, match="multiply to 2"):
        tiny_config(stem_channels=(8,), stem_strides=(2,))
    with pytest.raises(ValueError, match="go together"):
        tiny_config(stem_channels=(8,))


def test_forward_intermediates_is_the_one_pass_the_other_forwards_use():
    torch.manual_seed(0)
    model = VisionTransformer(tiny_config(depth=3)).eval()
    x = torch.randn(2, 3, 16, 16)
    # Reference: the paper's equations written out here, block by block.
    tokens = model.embed(x)
    outs = []
    for block in model.blocks:
        tokens = block(tokens)
        outs.append(tokens)

    def as_map(tokens):  # (B, 1 + 16, D) -> (B, D, 4, 4): the patch tokens on their grid, row by row
        return tokens[:, 1:].reshape(2, 4, 4, -1).permute(0, 3, 1, 2)

    final, chosen = model.forward_intermediates(x, indices=[0, -1])
    torch.testing.assert_close(final, model.norm(outs[-1]))
    torch.testing.assert_close(chosen[0], as_map(outs[0]))
    torch.testing.assert_close(chosen[1], as_map(outs[2]))
    _, last_two = model.forward_intermediates(x, indices=2, norm=True)
    torch.testing.assert_close(last_two[0], as_map(model.norm(outs[1])))
    maps = model.get_attention_maps(x, indices=[1])
    assert len(maps) == 1 and maps[0].shape == (2, 4, 17, 17)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 4, 17))
    early = model.forward_intermediates(x, indices=[0], stop_early=True, intermediates_only=True)
    torch.testing.assert_close(early[0], as_map(outs[0]))
    torch.testing.assert_close(model.forward_features(x), final)
    torch.testing.assert_close(model.get_intermediate_layers(x, n=[1])[0], outs[1])


def test_grad_checkpointing_and_layer_groups_come_from_the_model():
    model = VisionTransformer(tiny_config())
    x = torch.randn(2, 3, 16, 16)
    torch.manual_seed(0)
    model(x).sum().backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, plain[name], msg=name)
    matcher = model.group_matcher()
    assert re.match(matcher["stem"], "pos_embed") and re.match(matcher["blocks"], "blocks.1.mlp.fc1.weight")
    assert not re.match(matcher["stem"], "norm.weight") and not re.match(matcher["blocks"], "head.weight")


def test_a_reset_classifier_round_trips_through_save_pretrained(tmp_path):
    from vitkit.weights.load import load_pretrained, save_pretrained

    model = VisionTransformer(tiny_config())
    model.reset_classifier(3)
    loaded = load_pretrained(save_pretrained(model, tmp_path / "m.safetensors"))
    assert loaded.cfg.num_classes == loaded.num_classes == 3 and model.cfg.num_classes == 5
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model.eval()(x))
