"""Batched augmentation ops against Pillow (the reference the AutoAugment code uses) and colorsys."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from vitkit.data import ops
from vitkit.data.autoaugment import OPS, RAND_RANGES, apply_op, rand_augment, trivial_augment


def _images(n: int = 3, h: int = 20, w: int = 24, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):  # smooth-ish content with a narrow range, so autocontrast and equalize have work to do
        base = rng.integers(40, 200, (h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.BILINEAR)
        out.append(img if k else img.point(lambda v: v // 2 + 60))
    return out


def _batch(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(i).copy()).permute(2, 0, 1) for i in images]).double()


def _close(ours: torch.Tensor, pil: list[Image.Image], tol: float = 1.0) -> float:
    ref = _batch(pil)
    assert ours.shape == ref.shape
    diff = (ours - ref).abs()
    assert diff.max() <= tol, f"max diff {diff.max()}"
    return float((diff == 0).double().mean())


@pytest.mark.parametrize("name", ["Brightness", "Color", "Contrast", "Sharpness"])
@pytest.mark.parametrize("factor", [0.1, 0.6, 1.0, 1.7])
def test_enhance_ops_match_pillow(name, factor):
    images = _images()
    fn = {"Brightness": ops.brightness, "Color": ops.color, "Contrast": ops.contrast, "Sharpness": ops.sharpness}[name]
    ours = fn(_batch(images), torch.full((3,), factor))
    ref = [getattr(ImageEnhance, name)(i).enhance(factor) for i in images]
    # Pillow truncates blended values to integers (in float32) where we keep them exact.
    assert _close(torch.floor(ours), ref, tol=1.0) > 0.85


def test_histogram_and_bit_ops_match_pillow_exactly():
    images = _images()
    x = _batch(images)
    assert _close(ops.equalize(x), [ImageOps.equalize(i) for i in images], tol=0) == 1.0
    assert _close(ops.autocontrast(x), [ImageOps.autocontrast(i) for i in images], tol=0) == 1.0
    assert (
        _close(
            ops.posterize(x, torch.tensor([2, 4, 7])),
            [ImageOps.posterize(i, b) for i, b in zip(images, [2, 4, 7], strict=True)],
            tol=0,
        )
        == 1.0
    )
    thresholds = [256, 128, 90]
    assert (
        _close(
            ops.solarize(x, torch.tensor(thresholds)),
            [ImageOps.solarize(i, t) for i, t in zip(images, thresholds, strict=True)],
            tol=0,
        )
        == 1.0
    )
    flat = torch.full((1, 3, 5, 5), 77.0)  # a constant image is a fixed point of both
    assert torch.equal(ops.autocontrast(flat), flat) and torch.equal(ops.equalize(flat), flat)


def _pil_affine(img: Image.Image, data: tuple) -> Image.Image:
    return img.transform(img.size, Image.AFFINE, data, Image.NEAREST, fillcolor=(128, 128, 128))


def test_geometric_ops_match_pillow_nearest():
    images = _images()
    x = _batch(images)
    shears = torch.tensor([0.3, -0.17, 0.05], dtype=torch.float64)
    ref = [_pil_affine(i, (1, s, 0, 0, 1, 0)) for i, s in zip(images, shears.tolist(), strict=True)]
    assert _close(ops.shear_x(x, shears), ref, tol=0) == 1.0
    ref = [_pil_affine(i, (1, 0, 0, s, 1, 0)) for i, s in zip(images, shears.tolist(), strict=True)]
    assert _close(ops.shear_y(x, shears), ref, tol=0) == 1.0
    dx, dy = torch.tensor([3.0, -5.5, 0.0]), torch.tensor([-2.0, 0.0, 7.25])
    ref = [_pil_affine(i, (1, 0, a, 0, 1, b)) for i, a, b in zip(images, dx.tolist(), dy.tolist(), strict=True)]
    assert _close(ops.translate(x, dx, dy), ref, tol=0) == 1.0
    degrees = torch.tensor([30.0, -12.5, 45.0])
    ref = [i.rotate(d, Image.NEAREST, fillcolor=(128, 128, 128)) for i, d in zip(images, degrees.tolist(), strict=True)]
    # Pillow steps coordinates by repeated addition; a few pixels on rounding boundaries fall the other way.
    assert _close(ops.rotate(x, degrees), ref, tol=255) > 0.97


def test_rotation_by_90_degrees_is_a_transpose():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float64).view(2, 3, 6, 6)
    out = ops.rotate(x, torch.tensor([90.0, -90.0]))
    assert torch.equal(out[0], torch.rot90(x[0], 1, dims=(1, 2)))  # counter-clockwise
    assert torch.equal(out[1], torch.rot90(x[1], -1, dims=(1, 2)))


def test_hsv_round_trip_and_colorsys():
    rng = np.random.default_rng(0)
    rgb = rng.random((1, 3, 4, 5))
    hsv = ops.rgb_to_hsv(torch.from_numpy(rgb))
    ref = np.array([[colorsys.rgb_to_hsv(*rgb[0, :, i, j]) for j in range(5)] for i in range(4)])
    assert np.allclose(hsv[0].permute(1, 2, 0).numpy(), ref, atol=1e-12)
    assert torch.allclose(ops.hsv_to_rgb(hsv), torch.from_numpy(rgb), atol=1e-12)
    red = torch.tensor([255.0, 0.0, 0.0], dtype=torch.float64).view(1, 3, 1, 1)
    assert torch.allclose(
        ops.hue(red, torch.tensor([1 / 3])).flatten(), torch.tensor([0.0, 255.0, 0.0], dtype=torch.float64), atol=1e-3
    )


def test_ops_at_level_zero_are_identities():
    x = _batch(_images())
    level = torch.zeros(3)
    for name in OPS:
        if name in ("autocontrast", "equalize"):  # these have no magnitude
            continue
        assert torch.equal(apply_op(x, name, level, RAND_RANGES), x), name


@pytest.mark.parametrize("policy", ["rand", "trivial"])
def test_policies_are_seeded_per_image_and_stay_in_range(policy):
    x = _batch(_images(8, 16, 16)).float()
    run = lambda seed: (
        rand_augment(x, 2, 9.0, 0.5, torch.Generator().manual_seed(seed))
        if policy == "rand"
        else trivial_augment(x, torch.Generator().manual_seed(seed))
    )
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 255
    changed = [(a[i] != x[i]).any().item() for i in range(8)]
    assert sum(changed) >= 4  # most images drew an op that does something
