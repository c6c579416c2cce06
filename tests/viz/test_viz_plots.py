"""Every picture kind is written as a PNG of the size its layout promises, from the library and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_config
from train_data import run_vitkit
from vitkit import VisionTransformer
from vitkit.viz.draw import visualize

pytest.importorskip("matplotlib")

DPI = 50


@pytest.fixture()
def images(tmp_path):
    """Two small RGB images of different sizes and aspect ratios (fitted to the model's input)."""
    gen = np.random.default_rng(0)
    paths = []
    for name, (h, w) in {"a.png": (20, 20), "b.jpg": (30, 18)}.items():
        path = tmp_path / "imgs" / name
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(gen.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _px(width_in: float, height_in: float) -> tuple[int, int]:
    return (round(width_in * DPI), round(height_in * DPI))


def _check_png(path, size: tuple[int, int]) -> None:
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size == size
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.std() > 10  # drawn on, not a blank canvas


# Layout rule of vitkit.viz.plot: grids are cols * panel + 1.3 in wide and rows * panel + 0.6 in high.
# The tiny model: 16 px images, 4x4 patches of 4 px, width 32, 2 layers of 4 heads.
@pytest.mark.parametrize(
    "kind, layer, name, inches",
    [
        ("rollout", None, "rollout.png", (3 * 2.2 + 1.3, 2 * 2.2 + 0.6)),  # 2 images x (input, heat, product)
        ("heads", None, "heads-1-a-all.png", (4 * 1.1 + 1.3, 2 * 1.1 + 0.6)),  # layers x heads
        ("heads", -1, "heads-2-b-layer2.png", (2 * 2.0 + 1.3, 2 * 2.0 + 0.6)),  # 4 heads as 2x2
        ("distance", None, "distance.png", (6.0, 4.5)),
        ("posembed", None, "posembed.png", (4 * 1.6 + 1.3, 4 * 1.6 + 0.6)),  # 4x4 maps, 6.4 in of tiles
        ("filters", None, "filters.png", (7 * 1.0 + 0.2, 4 * 1.0 + 0.6)),  # 28 components, 7 per row, no bar
    ],
)
def test_every_kind_writes_png_of_expected_size(tmp_path, images, kind, layer, name, inches):
    model = VisionTransformer(tiny_config())
    written = visualize(model, images, kind, tmp_path / "out", layer=layer, dpi=DPI)
    assert tmp_path / "out" / name in written
    _check_png(tmp_path / "out" / name, _px(*inches))


def test_pooled_model_without_class_token_and_other_image_size(tmp_path, images):
    model = VisionTransformer(tiny_config(class_token=False, global_pool="avg", pos_embed="sincos2d"))
    written = visualize(model, images, ["rollout", "heads", "posembed"], tmp_path, layer=1, img_size=24, dpi=DPI)
    assert [p.name for p in written] == [
        "rollout.png",
        "heads-1-a-layer1.png",
        "heads-2-b-layer1.png",
        "posembed.png",
    ]
    _check_png(tmp_path / "rollout.png", _px(3 * 2.2 + 1.3, 2 * 2.2 + 0.6))
    assert model.dynamic_img_size  # 24 px inputs on a 16 px model: position embeddings resampled


def test_rollout_pages_and_learned2d_posembed(tmp_path, images):
    model = VisionTransformer(tiny_config(pos_embed="learned2d"))
    written = visualize(model, images * 5, ["rollout", "posembed"], tmp_path, dpi=DPI)  # 10 images
    assert [p.name for p in written] == ["rollout-1.png", "rollout-2.png", "posembed.png"]
    _check_png(tmp_path / "rollout-1.png", _px(3 * 2.2 + 1.3, 8 * 2.2 + 0.6))  # 8 rows per page
    _check_png(tmp_path / "rollout-2.png", _px(3 * 2.2 + 1.3, 2 * 2.2 + 0.6))


def test_all_skips_kinds_that_do_not_apply(tmp_path, images):
    model = VisionTransformer(tiny_config(pos_embed="none"))
    written = visualize(model, images[:1], "all", tmp_path, layer=2, dpi=DPI)
    assert [p.name for p in written] == ["rollout.png", "heads-1-a-layer2.png", "distance.png", "filters.png"]
    with pytest.raises(ValueError, match="no position embeddings"):
        visualize(model, [], "posembed", tmp_path)


def test_clear_errors(tmp_path, images):
    model = VisionTransformer(tiny_config())
    with pytest.raises(ValueError, match="need at least one image"):
        visualize(model, [], "rollout", tmp_path)
    with pytest.raises(ValueError, match="unknown kind"):
        visualize(model, images, "saliency", tmp_path)
    with pytest.raises(ValueError, match="outside 1..2"):
        visualize(model, images, "heads", tmp_path, layer=3)
    with pytest.raises(FileNotFoundError, match="neither an existing checkpoint nor a registered model"):
        visualize(str(tmp_path / "missing.safetensors"), images, "rollout", tmp_path)
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        visualize(model, images, "rollout", tmp_path, img_size=18)


def test_cli_smoke(tmp_path, images):
    from vitkit import save_pretrained

    checkpoint = save_pretrained(VisionTransformer(tiny_config()), tmp_path / "tiny.safetensors")
    out = tmp_path / "cli"
    args = ["visualize", checkpoint, images[0].parent, "--kind", "rollout", "--kind", "posembed"]
    result = run_vitkit(*args, "--img-size", "24x32", "--dpi", DPI, "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(out / "rollout.png"), str(out / "posembed.png")]
    _check_png(out / "rollout.png", _px(3 * 2.2 + 1.3, 2 * 2.2 + 0.6))
    _check_png(out / "posembed.png", _px(4 * 1.6 + 1.3, 4 * 1.6 + 0.6))  # the model's own 4x4 grid


def test_cli_errors_and_registry_names(tmp_path, capsys):
    from vitkit.cli.main import main
    from vitkit.viz.draw import load_model

    assert main(["visualize", "no_such_model", "--out", str(tmp_path)]) == 2
    assert "registered model name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["visualize", "vit_tiny_patch4_32", "--img-size", "3x4x5"])
    assert "expected a size like 224 or 224x320" in capsys.readouterr().err
    model, name = load_model("vit_tiny_patch4_32")  # a registered name: random weights for a quick look
    assert name == "vit_tiny_patch4_32 (random weights)" and model.cfg.embed_dim == 192


def test_visualize_is_public():
    import vitkit

    assert vitkit.visualize is visualize


def test_imported_hf_checkpoint_at_another_size(tmp_path, images):
    from vitkit.weights import save_hf

    folder = save_hf(VisionTransformer(tiny_config()), tmp_path / "hf")
    written = visualize(folder, images, ["rollout", "filters"], tmp_path / "out", img_size=(24, 32), dpi=DPI)
    assert [p.name for p in written] == ["rollout.png", "filters.png"]
    with Image.open(written[0]) as png:
        assert png.size == _px(3 * 2.2 + 1.3, 2 * 2.2 + 0.6)


def test_find_images_spreads_a_limit_over_folders(tmp_path):
    from vitkit.viz.images import find_images

    for cls in ("a", "b", "c"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            (tmp_path / cls / f"{i}.png").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    picked = find_images([tmp_path], limit=6)
    assert [f"{p.parent.name}/{p.name}" for p in picked] == [
        "a/0.png",
        "a/2.png",
        "b/0.png",
        "b/2.png",
        "c/0.png",
        "c/2.png",
    ]
    assert len(find_images([tmp_path])) == 12
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_images([tmp_path / "missing.jpg"])
