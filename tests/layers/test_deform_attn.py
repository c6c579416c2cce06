"""Multi-scale deformable attention: the sampling core against a plain float64 NumPy bilinear sampler (points off
the map included, levels of different shapes), gradients by finite differences, independence of the batch, bfloat16
inputs, the module's plumbing and its Deformable DETR initialisation against hand-derived values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from train_data import one_thread  # noqa: F401  (fixture)
from vitkit.layers.deform_attn import MSDeformAttn, ms_deform_attn_grid_sample, ms_deform_attn_sample

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only contend
SHAPES = [(3, 5), (2, 2), (1, 3)]  # (H, W) per level: non-square, tiny, a single row
CORES = {"gather": ms_deform_attn_sample, "grid_sample": ms_deform_attn_grid_sample}


def numpy_sample(value_map: np.ndarray, x: float, y: float) -> np.ndarray:
    """Bilinear sample of an (H, W, C) map at (x, y) in [0, 1] units of the whole map, zero outside (grid_sample's
    align_corners=False: pixel i covers [i, i + 1) / W, its centre at (i + 0.5) / W)."""
    H, W, C = value_map.shape
    px, py = x * W - 0.5, y * H - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = np.zeros(C)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < H and 0 <= xx < W:
                out += wy * wx * value_map[yy, xx]
    return out


def numpy_core(value, shapes, locations, weights) -> np.ndarray:
    """(B, S, M, Dh), (B, Lq, M, L, P, 2), (B, Lq, M, L, P) -> (B, Lq, M * Dh) by loops."""
    B, _, M, Dh = value.shape
    _, Lq, _, L, P, _ = locations.shape
    starts = np.cumsum([0] + [h * w for h, w in shapes])
    out = np.zeros((B, Lq, M, Dh))
    for b in range(B):
        for q in range(Lq):
            for m in range(M):
                for lvl, (h, w) in enumerate(shapes):
                    level = value[b, starts[lvl] : starts[lvl + 1], m].reshape(h, w, Dh)
                    for p in range(P):
                        x, y = locations[b, q, m, lvl, p]
                        out[b, q, m] += weights[b, q, m, lvl, p] * numpy_sample(level, x, y)
    return out.reshape(B, Lq, M * Dh)


def random_inputs(B=2, Lq=4, M=2, Dh=3, P=3, shapes=SHAPES, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    S, L = sum(h * w for h, w in shapes), len(shapes)
    value = torch.randn(B, S, M, Dh, generator=g, dtype=dtype)
    locations = torch.rand(B, Lq, M, L, P, 2, generator=g, dtype=dtype) * 1.8 - 0.4  # a third lands off the map
    weights = torch.rand(B, Lq, M, L, P, generator=g, dtype=dtype)
    return value, locations, weights


@pytest.mark.parametrize("core", sorted(CORES))
def test_sampling_equals_a_plain_numpy_bilinear_sampler(core):
    value, locations, weights = random_inputs()
    # Exact edges and corners: the first and last pixel centres, the map's border, points just outside it.
    edges = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.1, 1.0], [1.0, 0.5], [-0.25, 0.5], [0.5, 1.2], [0.999, 0.001]])
    locations[0, 0, 0, :, :3] = edges[:3, None].transpose(0, 1).expand(len(SHAPES), 3, 2).to(locations)
    locations[1, 1, 1, :, :3] = edges[3:6, None].transpose(0, 1).expand(len(SHAPES), 3, 2).to(locations)
    locations[1, 2, 0, 0, 0] = edges[6].to(locations)
    expected = numpy_core(value.numpy(), SHAPES, locations.numpy(), weights.numpy())
    out = CORES[core](value, torch.tensor(SHAPES), locations, weights)
    assert out.shape == (2, 4, 2 * 3)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    off_map = (locations < -0.5 / 5).any(-1) | (locations > 1 + 0.5 / 5).any(-1)
    assert off_map.float().mean() > 0.1  # the case of points whose corners fall off the map is exercised


def test_gather_core_gradients_match_finite_differences():
    value, locations, weights = random_inputs(B=2, Lq=3, M=2, Dh=2, P=2, shapes=[(3, 4), (2, 1)], seed=1)
    inputs = [t.clone().requires_grad_() for t in (value, locations, weights)]
    assert torch.autograd.gradcheck(lambda v, loc, w: ms_deform_attn_sample(v, [(3, 4), (2, 1)], loc, w), inputs)


def test_gradients_agree_between_the_two_cores():
    value, locations, weights = random_inputs(seed=2)
    grads = []
    for core in CORES.values():
        inputs = [t.clone().requires_grad_() for t in (value, locations, weights)]
        (core(inputs[0], SHAPES, inputs[1], inputs[2]) * torch.linspace(-1, 1, 6, dtype=torch.float64)).sum().backward()
        grads.append([t.grad for t in inputs])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_output_does_not_depend_on_the_rest_of_the_batch():
    value, locations, weights = random_inputs(B=3, dtype=torch.float32, seed=3)
    together = ms_deform_attn_sample(value, SHAPES, locations, weights)
    for b in range(3):
        alone = ms_deform_attn_sample(value[b : b + 1], SHAPES, locations[b : b + 1], weights[b : b + 1])
        torch.testing.assert_close(alone[0], together[b], rtol=0, atol=1e-6)
    order = torch.tensor([2, 0, 1])
    shuffled = ms_deform_attn_sample(value[order], SHAPES, locations[order], weights[order])
    torch.testing.assert_close(shuffled, together[order], rtol=0, atol=1e-6)


def test_bfloat16_inputs_give_bfloat16_close_to_float32():
    value, locations, weights = random_inputs(dtype=torch.float32, seed=4)
    reference = ms_deform_attn_sample(value, SHAPES, locations, weights)
    inputs = [t.to(torch.bfloat16).requires_grad_() for t in (value, locations, weights)]
    out = ms_deform_attn_sample(inputs[0], SHAPES, inputs[1], inputs[2])
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, rtol=0.05, atol=0.05)
    out.float().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.bfloat16 for t in inputs)


def test_value_length_must_match_the_shapes():
    value, locations, weights = random_inputs()
    with pytest.raises(ValueError, match="value has 21 tokens but the levels"):
        ms_deform_attn_sample(value[:, :-1], SHAPES, locations, weights)


# ----------------------------------------------------------------------------------------------------- module
def test_initialisation_is_deformable_detrs():
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=8, n_points=3, ratio=0.5)
    # Head m points along angle 2 pi m / 8, scaled so the larger coordinate is 1: E, NE, N, NW, W, SW, S, SE;
    # point k (0-based) sits k + 1 pixels out, on every level.
    directions = torch.tensor([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]], dtype=torch.float)
    expected = directions[:, None, None, :] * torch.tensor([1.0, 2.0, 3.0])[None, None, :, None]
    bias = attn.sampling_offsets.bias.detach().view(8, 2, 3, 2)
    torch.testing.assert_close(bias, expected.expand(8, 2, 3, 2), rtol=0, atol=1e-5)  # float32 cos/sin
    assert not attn.sampling_offsets.weight.any() and not attn.attention_weights.weight.any()
    assert not attn.attention_weights.bias.any() and not attn.value_proj.bias.any() and not attn.output_proj.bias.any()
    assert attn.value_proj.weight.shape == (8, 16) and attn.output_proj.weight.shape == (16, 8)  # ratio 0.5
    bound = math.sqrt(6 / (16 + 8))  # Xavier-uniform
    assert attn.value_proj.weight.abs().max() <= bound and attn.value_proj.weight.std() > bound / 3


def test_module_equals_its_equations_in_numpy():
    torch.manual_seed(5)
    D, M, L, P = 8, 2, len(SHAPES), 2
    attn = MSDeformAttn(d_model=D, n_levels=L, n_heads=M, n_points=P, ratio=0.5).double()
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.5)
    B, Lq, S = 2, 3, sum(h * w for h, w in SHAPES)
    query, feats = torch.randn(B, Lq, D, dtype=torch.float64), torch.randn(B, S, D, dtype=torch.float64)
    reference = torch.rand(B, Lq, 1, 2, dtype=torch.float64)  # one point per query, shared by the levels
    mask = torch.zeros(B, S, dtype=torch.bool)
    mask[1, -4:] = True
    out = attn(query, reference, feats, torch.tensor(SHAPES), padding_mask=mask)

    w = {k: v.detach().numpy() for k, v in attn.state_dict().items()}
    q, f = query.numpy(), feats.numpy()
    value = f @ w["value_proj.weight"].T + w["value_proj.bias"]
    value[mask.numpy()] = 0.0
    value = value.reshape(B, S, M, -1)
    offsets = (q @ w["sampling_offsets.weight"].T + w["sampling_offsets.bias"]).reshape(B, Lq, M, L, P, 2)
    logits = (q @ w["attention_weights.weight"].T + w["attention_weights.bias"]).reshape(B, Lq, M, L * P)
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    size = np.array([(wd, h) for h, wd in SHAPES], dtype=np.float64)  # offsets are in pixels of each level
    locations = reference.numpy()[:, :, None, :, None, :] + offsets / size[None, None, None, :, None, :]
    sampled = numpy_core(value, SHAPES, locations, weights.reshape(B, Lq, M, L, P))
    expected = sampled @ w["output_proj.weight"].T + w["output_proj.bias"]
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-10, atol=1e-10)


def test_module_rejects_heads_that_do_not_divide_the_value_width():
    with pytest.raises(ValueError, match=r"int\(d_model \* ratio\) = 12 must both be divisible by n_heads 8"):
        MSDeformAttn(d_model=24, n_levels=1, n_heads=8, ratio=0.5)
