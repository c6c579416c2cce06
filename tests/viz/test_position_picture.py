"""The position picture for every pos_embed kind: similarity of embeddings, or the relative bias in the same layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import tiny_config
from pos_embed_helpers import reference_bias
from vitkit import VisionTransformer
from vitkit.config import POS_EMBEDS
from vitkit.viz import draw_position_picture, position_similarity, relative_bias_maps


def test_relative_bias_maps_average_a_loop_reference_over_heads_and_blocks():
    model = VisionTransformer(tiny_config(pos_embed="relative", img_size=(16, 12)))  # 4x3 patches
    tables = [b.attn.relative_position_bias_table.detach().double().numpy() for b in model.blocks]
    expected = np.mean([reference_bias(t, (4, 3), 1)[:, 1:, 1:] for t in tables], axis=(0, 1))  # (N, N)
    maps = relative_bias_maps(model)
    assert maps.shape == (4, 3, 4, 3)
    np.testing.assert_allclose(maps.reshape(12, 12).double().numpy(), expected, atol=1e-7)
    assert torch.equal(position_similarity(model), maps)  # what `vitkit visualize --kind posembed` draws
    with pytest.raises(ValueError, match="no relative position bias"):
        relative_bias_maps(VisionTransformer(tiny_config()))


@pytest.mark.parametrize("kind", [k for k in POS_EMBEDS if k != "none"])
def test_every_kind_draws_its_position_picture(tmp_path, kind):
    pytest.importorskip("matplotlib")
    model = VisionTransformer(tiny_config(pos_embed=kind))
    path = draw_position_picture(model, tmp_path / f"{kind}.png")
    assert path == tmp_path / f"{kind}.png" and path.stat().st_size > 5000
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert pixels.std() > 10  # tiles, ticks and a colour bar, not a blank canvas


def test_no_position_information_has_nothing_to_draw(tmp_path):
    with pytest.raises(ValueError, match="no position embeddings .* nothing to compare"):
        draw_position_picture(VisionTransformer(tiny_config(pos_embed="none")), tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
