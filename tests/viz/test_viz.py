"""The maths of vitkit.viz on cases with known answers and against float64 numpy references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from helpers import tiny_config
from vitkit import VisionTransformer
from vitkit.viz import (
    attention_maps,
    attention_rollout,
    filter_components,
    mean_attention_distance,
    model_attention_distance,
    patch_distances,
    position_similarity,
    prepare_model,
    query_attention,
    rollout_map,
)


def _random_attention(layers: int, batch: int, heads: int, tokens: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(layers, batch, heads, tokens, tokens, generator=gen).mul(2).softmax(dim=-1)


# ------------------------------------------------------------------------------------------------ rollout
def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(5).expand(3, 2, 4, 5, 5)  # (L, B, heads, T, T)
    torch.testing.assert_close(attention_rollout(eye), torch.eye(5).expand(2, 5, 5))


def test_rollout_of_uniform_attention_matches_hand_derivation():
    # One layer: A_hat = (U + I) / 2 with U = 1/T everywhere; two layers: since U @ U = U,
    # A_hat^2 = (3U + I) / 4, so the diagonal is 3/(4T) + 1/4 and every other entry 3/(4T).
    T = 5
    uniform = torch.full((2, 1, 3, T, T), 1.0 / T)
    expected = torch.full((T, T), 3 / (4 * T)) + torch.eye(T) / 4
    torch.testing.assert_close(attention_rollout(uniform)[0], expected)


def test_rollout_matches_abnar_zuidema_in_float64():
    attn = _random_attention(layers=4, batch=2, heads=3, tokens=6)
    ref = []
    for b in range(2):
        joint = np.eye(6)
        for layer in attn[:, b].double().numpy():
            fused = 0.5 * layer.mean(axis=0) + 0.5 * np.eye(6)  # the paper's 0.5 W_att + 0.5 I
            joint = fused @ joint
        ref.append(joint)
    torch.testing.assert_close(attention_rollout(attn), torch.tensor(np.stack(ref), dtype=torch.float32))


def test_rollout_map_reads_class_token_or_mean_of_patches():
    rollout = torch.eye(5).expand(1, 5, 5)  # 1 prefix token + a 2x2 grid
    assert torch.equal(rollout_map(rollout, (2, 2), 1, "token"), torch.zeros(1, 2, 2))  # class token kept to itself
    # Pooled readout of an identity rollout: each patch feeds only itself, so the mean spreads 1/N over the grid.
    torch.testing.assert_close(rollout_map(rollout, (2, 2), 1, "avg"), torch.full((1, 2, 2), 0.25))
    no_prefix = torch.eye(4).expand(1, 4, 4)
    torch.testing.assert_close(rollout_map(no_prefix, (2, 2), 0, "avg"), torch.full((1, 2, 2), 0.25))
    with pytest.raises(ValueError, match="class token"):
        rollout_map(no_prefix, (2, 2), 0, "token")


def test_query_attention_is_the_class_token_row():
    attn = _random_attention(layers=1, batch=2, heads=3, tokens=5)[0]  # (B, heads, T, T)
    maps = query_attention(attn, (2, 2), 1, "token")
    assert maps.shape == (2, 3, 2, 2)
    torch.testing.assert_close(maps.flatten(2), attn[:, :, 0, 1:])


def test_rollout_rejects_bad_shapes_and_fusions():
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(torch.eye(3).expand(1, 1, 1, 3, 3), head_fusion="median")
    with pytest.raises(ValueError, match="layers, B, heads, T, T"):
        attention_rollout(torch.eye(3).expand(1, 1, 3, 3))


# ----------------------------------------------------------------------------------------------- distance
def _pairwise_mean_distance(grid: tuple[int, int], stride: tuple[int, int]) -> float:
    """Brute force: mean over all (query, key) patch pairs of the pixel distance between their centres."""
    cells = list(itertools.product(range(grid[0]), range(grid[1])))
    total = sum(
        math.hypot((r1 - r2) * stride[0], (c1 - c2) * stride[1])
        for (r1, c1), (r2, c2) in itertools.product(cells, cells)
    )
    return total / len(cells) ** 2


def test_uniform_attention_distance_on_2x2_grid_by_hand():
    # 2x2 patches of 4 px: from any patch, distances 0, 4, 4 and 4*sqrt(2); mean 2 + sqrt(2).
    attn = torch.full((1, 1, 1, 5, 5), 0.2)  # a class token plus 4 patches, attended uniformly
    dist = mean_attention_distance(attn, (2, 2), (4, 4), num_prefix_tokens=1)
    assert dist.shape == (1, 1)
    assert dist.item() == pytest.approx(2 + math.sqrt(2), abs=1e-12)


def test_uniform_attention_distance_equals_mean_pairwise_distance():
    grid, stride = (3, 4), (2, 3)
    attn = torch.full((2, 3, 4, 12, 12), 1 / 12)  # no prefix tokens
    dist = mean_attention_distance(attn, grid, stride, num_prefix_tokens=0)
    np.testing.assert_allclose(dist.numpy(), _pairwise_mean_distance(grid, stride), rtol=1e-12)


def test_attention_distance_of_local_patterns():
    eye = torch.eye(4).expand(2, 1, 3, 4, 4)
    assert torch.equal(mean_attention_distance(eye, (2, 2), (8, 8), 0), torch.zeros(2, 3, dtype=torch.float64))
    right = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.float32)
    swap = right.expand(1, 1, 1, 4, 4)  # each patch looks only at its horizontal neighbour, 8 px away
    assert mean_attention_distance(swap, (2, 2), (8, 8), 0).item() == pytest.approx(8.0)


def test_patch_distances_brute_force():
    grid, stride = (2, 3), (5, 7)
    cells = list(itertools.product(range(2), range(3)))
    ref = [[math.hypot((a[0] - b[0]) * 5, (a[1] - b[1]) * 7) for b in cells] for a in cells]
    np.testing.assert_allclose(patch_distances(grid, stride).numpy(), np.array(ref), rtol=1e-12)


def test_model_attention_distance_batches_agree_with_one_pass():
    model = prepare_model(VisionTransformer(tiny_config()))
    images = torch.randn(5, 3, 16, 16)
    one_pass = mean_attention_distance(attention_maps(model, images), (4, 4), (4, 4), model.num_prefix_tokens)
    batched = model_attention_distance(model, images, batch_size=2)
    torch.testing.assert_close(batched, one_pass)
    assert batched.shape == (2, 4)  # (layers, heads)
    assert (batched > 0).all() and (batched < _diagonal(16)).all()


def _diagonal(size: int) -> float:
    return math.hypot(size, size)


# ------------------------------------------------------------------------------------------------ capture
def test_attention_capture_at_another_image_size():
    model = prepare_model(VisionTransformer(tiny_config()), (24, 20))
    maps = attention_maps(model, torch.randn(3, 3, 24, 20), batch_size=2)
    assert maps.shape == (2, 3, 4, 1 + 6 * 5, 1 + 6 * 5)  # (L, B, heads, T, T)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 3, 4, 31))
    assert model.dynamic_img_size and not model.cfg.dynamic_img_size  # the config is never changed


# ---------------------------------------------------------------------------------------------- embeddings
@pytest.mark.parametrize("kind", ["learned", "learned2d", "sincos1d", "sincos2d"])
def test_position_similarity_has_unit_diagonal(kind):
    model = VisionTransformer(tiny_config(pos_embed=kind, img_size=(16, 12)))
    sim = position_similarity(model)
    assert sim.shape == (4, 3, 4, 3)
    flat = sim.reshape(12, 12)
    torch.testing.assert_close(flat.diagonal(), torch.ones(12))
    torch.testing.assert_close(flat, flat.T)
    assert flat.abs().max() <= 1 + 1e-6


def test_position_similarity_of_learned_table_in_float64():
    model = VisionTransformer(tiny_config(pos_embed="learned"))
    table = model.pos_embed[0, 1:].detach().double().numpy()  # (16, D) without the class token
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    np.testing.assert_allclose(position_similarity(model).reshape(16, 16).numpy(), unit @ unit.T, atol=1e-6)


def test_position_similarity_of_learned2d_from_its_halves():
    model = VisionTransformer(tiny_config(pos_embed="learned2d"))
    rows = model.pos_embed_row[0].detach().double().numpy()  # (gh, D/2)
    cols = model.pos_embed_col[0].detach().double().numpy()  # (gw, D/2)
    a, b = np.concatenate([rows[1], cols[2]]), np.concatenate([rows[3], cols[0]])
    expected = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert position_similarity(model)[1, 2, 3, 0].item() == pytest.approx(expected, abs=1e-6)


def test_position_similarity_needs_position_embeddings():
    with pytest.raises(ValueError, match="no position embeddings"):
        position_similarity(VisionTransformer(tiny_config(pos_embed="none")))


def test_filter_components_are_orthonormal_principal_axes():
    model = VisionTransformer(tiny_config(embed_dim=64, patch_size=4))  # 64 filters of 3*4*4 = 48 values
    comps, ratio = filter_components(model, count=10)
    assert comps.shape == (10, 3, 4, 4)
    flat = comps.flatten(1).double()
    torch.testing.assert_close(flat @ flat.T, torch.eye(10, dtype=torch.float64), atol=1e-6, rtol=0)
    # Reference: eigenvectors of the filters' covariance, in float64 numpy, equal up to sign.
    weights = model.patch_embed.proj.weight.detach().double().flatten(1).numpy()
    centred = weights - weights.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(values)[::-1][:10]
    overlap = np.abs(np.sum(vectors[:, order].T * flat.numpy(), axis=1))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-5)
    np.testing.assert_allclose(ratio.numpy(), values[order] / values.sum(), rtol=1e-5)
    assert (ratio[:-1] >= ratio[1:]).all()


def test_filter_components_capped_by_filter_count():
    comps, ratio = filter_components(VisionTransformer(tiny_config()), count=100)  # D = 32 < 48 values per filter
    assert comps.shape[0] == ratio.shape[0] == 32


def test_attention_of_hf_checkpoint_matches_transformers(tmp_path):
    """An imported checkpoint: a Hugging Face folder written by transformers itself, loaded by load_pretrained;
    the captured probabilities must equal those transformers reports (eager attention, float32)."""
    transformers = pytest.importorskip("transformers")
    from vitkit import load_pretrained
    from vitkit.weights import save_hf

    save_hf(VisionTransformer(tiny_config()), tmp_path / "ours")
    reference = transformers.ViTForImageClassification.from_pretrained(tmp_path / "ours", attn_implementation="eager")
    reference.save_pretrained(tmp_path / "hf")  # the folder as transformers writes it
    model = prepare_model(load_pretrained(tmp_path / "hf"))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = torch.stack(reference.eval()(pixel_values=x, output_attentions=True).attentions)
    torch.testing.assert_close(attention_maps(model, x), expected, atol=1e-5, rtol=1e-4)
