"""``visualize --point Y,X`` on a ViT: each head's attention of the patch under that pixel, for one layer (the last
by default), equal to a float64 softmax(q k^T / sqrt(d)) row of the right token recomputed from the block's own
input and weights (the token index derived here from the pixel, the patch size and the prefix tokens); clear
errors; and ``--adapters`` on the command line, which changes what is drawn exactly as the adapted model does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import tiny_config
from vitkit import VisionTransformer, load_pretrained, save_pretrained
from vitkit.adapters import AdapterConfig, add_adapters, save_adapters
from vitkit.viz import draw
from vitkit.viz.draw import visualize

pytest.importorskip("matplotlib")

DPI = 50
PATCH = 4  # tiny_config's patch size; the conv stem below also reduces by 2 x 2 = 4


@pytest.fixture()
def image(tmp_path):
    path = tmp_path / "imgs" / "face.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture()
def recorded(monkeypatch):
    """The (heads, gh, gw) maps and point each figure is drawn from; the figure is still written."""
    calls = []
    original = draw.plot_point_attention

    def record(image, maps, point, stride, path, **kwargs):
        calls.append({"maps": maps.clone(), "point": point, "stride": stride, "path": path})
        return original(image, maps, point, stride, path, **kwargs)

    monkeypatch.setattr(draw, "plot_point_attention", record)
    return calls


def _expected_row(block_input: torch.Tensor, attn: torch.nn.Module, token: int, prefix: int, grid) -> torch.Tensor:
    """(heads, gh, gw): softmax(q k^T / sqrt(d)) of ``token`` over the patch keys, in float64 from the qkv weights."""
    x = block_input.double()  # (1, T, D), the attention's input (after norm1)
    qkv = x @ attn.qkv.weight.double().T + attn.qkv.bias.double()  # (1, T, 3D)
    T, heads = x.shape[1], attn.num_heads
    q, k, _ = qkv.reshape(1, T, 3, heads, -1).permute(2, 0, 3, 1, 4)  # each (1, H, T, d)
    probs = (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).softmax(dim=-1)  # (1, H, T, T)
    return probs[0, :, token, prefix:].reshape(heads, *grid)


CASES = {
    "class-token": (dict(), 1),
    "pooled-sincos-no-prefix": (dict(class_token=False, global_pool="avg", pos_embed="sincos2d"), 0),
    "deit-two-prefix": (dict(distilled=True), 2),
    "learned2d": (dict(pos_embed="learned2d"), 1),
    "conv-stem": (dict(stem_channels=(8, 16), stem_strides=(2, 2)), 1),
}


@pytest.mark.parametrize(
    "case, layer, size, point",
    [
        ("class-token", None, 16, (9, 6)),
        ("class-token", 1, 24, (9, 22)),  # another input size (position table resampled), the first layer
        ("pooled-sincos-no-prefix", None, 16, (15, 0)),
        ("deit-two-prefix", -1, 16, (0, 15)),
        ("learned2d", None, 16, (4, 4)),
        ("conv-stem", None, 16, (9, 6)),
    ],
)
def test_point_maps_are_the_attention_row_of_the_patch_under_the_pixel(
    tmp_path, image, recorded, case, layer, size, point
):
    changes, prefix = CASES[case]
    torch.manual_seed(0)
    model = VisionTransformer(tiny_config(**changes))
    assert model.num_prefix_tokens == prefix and model.cfg.grid_size == (4, 4)
    index = (layer - 1 if layer > 0 else 2 + layer) if layer is not None else 1  # 2 blocks; default: the last
    captured = []
    model.blocks[index].attn.register_forward_pre_hook(lambda m, args: captured.append(args[0].detach()))
    out = tmp_path / "viz"
    files = visualize(model, [image], None, out, point=point, layer=layer, img_size=size, dpi=DPI)

    grid = (size // PATCH, size // PATCH)
    token = prefix + (point[0] // PATCH) * grid[1] + point[1] // PATCH  # row-major patches after the prefix
    expected = _expected_row(captured[-1], model.blocks[index].attn, token, prefix, grid)
    (call,) = recorded
    assert call["point"] == point and tuple(call["stride"]) == (PATCH, PATCH)
    torch.testing.assert_close(call["maps"].double(), expected, atol=1e-6, rtol=1e-5)
    assert files == [out / f"heads-1-face-layer{index + 1}-y{point[0]}x{point[1]}.png"]
    with Image.open(files[0]) as png:  # 4 heads as 2 x 2 panels of 2 in, + 1.3 in colour bar, + 0.6 in title
        assert png.format == "PNG" and png.size == (round(5.3 * DPI), round(4.6 * DPI))
        assert np.asarray(png.convert("RGB")).std() > 10


def test_point_errors_are_one_line(tmp_path, image):
    from mae_helpers import tiny_mae_config
    from vitkit.families import build_model

    model = VisionTransformer(tiny_config())
    with pytest.raises(ValueError, match=r"point \(16, 3\) lies outside the 16x16 input"):
        visualize(model, [image], None, tmp_path, point=(16, 3))
    with pytest.raises(ValueError, match=r"point \(3, -1\) lies outside"):
        visualize(model, [image], "heads", tmp_path, point=(3, -1))
    with pytest.raises(ValueError, match=r"--point chooses the query of --kind heads .*not of \['distance'\]"):
        visualize(model, [image], "distance", tmp_path, point=(3, 3))
    mae = build_model(tiny_mae_config())
    with pytest.raises(ValueError, match=r"--point draws each head's attention.*'mae' model.*\['reconstruction'\]"):
        visualize(mae, [image], None, tmp_path, point=(3, 3))
    with pytest.raises(ValueError, match="adapters go onto a checkpoint loaded from disk"):
        visualize(model, [image], None, tmp_path, point=(3, 3), adapters=tmp_path / "a.safetensors")


def test_cli_point_with_adapters_draws_the_adapted_model(tmp_path, image, recorded, capsys):
    """`vitkit visualize CKPT IMG --point Y,X --adapters A`: the maps are the adapted model's (a block bottleneck
    before the last layer changes them), not the base's."""
    from vitkit.cli.main import main

    torch.manual_seed(0)
    base = save_pretrained(VisionTransformer(tiny_config(num_classes=2)), tmp_path / "base.safetensors")
    adapted = load_pretrained(base)
    add_adapters(adapted, AdapterConfig(method="bottleneck", bottleneck=4, head_adapter=4))
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "adapter" in name:
                p.normal_(std=0.5)
    adapters = save_adapters(adapted, tmp_path / "adapters.safetensors")
    visualize(adapted.eval(), [image], None, tmp_path / "lib", point=(9, 6), dpi=DPI)
    visualize(load_pretrained(base), [image], None, tmp_path / "base", point=(9, 6), dpi=DPI)
    out = tmp_path / "cli"
    args = ["visualize", str(base), str(image), "--point", "9,6", "--adapters", str(adapters), "--out", str(out)]
    assert main([*args, "--dpi", str(DPI)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "heads-1-face-layer2-y9x6.png")]
    lib, plain, cli = (c["maps"] for c in recorded)
    assert torch.equal(cli, lib) and not torch.allclose(cli, plain, atol=1e-3)

    assert main(["visualize", str(base), str(image), "--point", "99,6", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "lies outside the 16x16 input" in err[-1] and "Traceback" not in "".join(err)
    with pytest.raises(SystemExit):
        main(["visualize", str(base), "--point", "9"])
    assert "expected a pixel as Y,X" in capsys.readouterr().err
