"""The fixed 1D sin-cos table and the relative position bias, against independent float64 / loop references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pos_embed_helpers import reference_attention, reference_bias, reference_sincos_1d
from vitkit.layers.attention import Attention
from vitkit.layers.pos_embed import sincos_1d
from vitkit.layers.relative_position import gather_bias, relative_position_index, resample_bias_table


def test_sincos_1d_matches_the_papers_formula_in_float64():
    table = sincos_1d(20, 32)
    assert table.dtype == torch.float32 and table.shape == (20, 32)
    np.testing.assert_allclose(table.double().numpy(), reference_sincos_1d(20, 32), atol=1e-7)
    with pytest.raises(ValueError, match="even width"):
        sincos_1d(4, 7)


@pytest.mark.parametrize(("grid", "prefix"), [((3, 3), 1), ((2, 4), 1), ((3, 2), 2), ((2, 3), 0)])
def test_relative_bias_matches_a_loop_over_token_pairs(grid, prefix):
    rows = (2 * grid[0] - 1) * (2 * grid[1] - 1) + (3 if prefix else 0)
    table = torch.randn(rows, 4, dtype=torch.float64)
    bias = gather_bias(table, relative_position_index(grid, prefix))
    np.testing.assert_array_equal(bias.numpy(), reference_bias(table.numpy(), grid, prefix))


def test_relative_index_is_beits_layout():
    """Same index as BEiT's (through transformers' copy of it), so BEiT tables mean the same here."""
    beit = pytest.importorskip("transformers.models.beit.modeling_beit")
    for grid in [(3, 3), (2, 5)]:
        expected = beit.BeitRelativePositionBias.generate_relative_position_index(grid)
        assert torch.equal(relative_position_index(grid, 1), expected)


def test_resample_bias_table_keeps_prefix_entries_and_the_zero_offset():
    old, new = (4, 4), (6, 5)
    table = torch.randn(7 * 7 + 3, 2)
    out = resample_bias_table(table, new, old, num_prefix_tokens=1)
    assert out.shape == (11 * 9 + 3, 2)
    assert torch.equal(out[-3:], table[-3:])
    zero_old = 3 * 7 + 3  # offset (0, 0): (Gh - 1) * (2Gw - 1) + (Gw - 1)
    zero_new = 5 * 9 + 4
    torch.testing.assert_close(out[zero_new], table[zero_old])  # bicubic passes through the centre sample
    assert resample_bias_table(table, old, old, num_prefix_tokens=1) is table
    with pytest.raises(ValueError, match="3x3 grid has 25 offsets but the table has 49 rows"):
        resample_bias_table(table[:-3], new, (3, 3))


def test_attention_with_bias_matches_float64_reference_on_both_paths():
    torch.manual_seed(0)
    attn = Attention(16, 2, relative_grid=(2, 3), num_prefix_tokens=1).eval()
    with torch.no_grad():
        attn.relative_position_bias_table.normal_(0, 1.0)
    x = torch.randn(3, 7, 16)
    bias = torch.from_numpy(reference_bias(attn.relative_position_bias_table.detach().double().numpy(), (2, 3), 1))
    weights = {k: v.detach().double() for k, v in attn.state_dict().items()}
    expected, probs = reference_attention(x.double(), weights, 2, bias)
    with torch.no_grad():
        fused = attn(x)  # scaled_dot_product_attention with the bias as a float mask
        explicit, captured = attn(x, return_attention=True)
    torch.testing.assert_close(fused.double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit.double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(captured.double(), probs, atol=1e-5, rtol=1e-5)


def test_attention_refuses_tokens_the_bias_does_not_cover():
    attn = Attention(16, 2, relative_grid=(2, 2), num_prefix_tokens=1)
    with pytest.raises(ValueError, match="covers 1 prefix token"):
        attn(torch.randn(1, 7, 16))
    with pytest.raises(ValueError, match="do not combine"):
        Attention(16, 2, window_size=2, relative_grid=(2, 2))
