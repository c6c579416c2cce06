"""The shift measurements against independent NumPy computations: the translation against ``np.pad(mode="reflect")``
and a crop, the report's consistency and logit distance against a per-image float64 loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vitkit.studies.shift import DIRECTIONS, centred_cosine_distance, shift_report, translate


def _numpy_translate(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Content moved dx right and dy down: pad by reflection on the side it comes from, crop the other side."""
    n, c, h, w = images.shape
    pad = ((0, 0), (0, 0), (max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0)))
    padded = np.pad(images, pad, mode="reflect")
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[:, :, top : top + h, left : left + w]


@pytest.mark.parametrize("dx, dy", [(1, 0), (0, 3), (8, 8), (-2, 5), (7, -1), (0, 0)])
def test_translate_matches_numpy_reflect(dx, dy):
    images = torch.randint(0, 256, (2, 3, 16, 12), dtype=torch.uint8)
    moved = translate(images, dx, dy)
    assert moved.dtype == torch.uint8 and moved.shape == images.shape
    np.testing.assert_array_equal(moved.numpy(), _numpy_translate(images.numpy(), dx, dy))


def test_translate_moves_content_right_and_down():
    images = torch.zeros(1, 1, 6, 6, dtype=torch.uint8)
    images[0, 0, 1, 2] = 9
    moved = translate(images, 2, 1)
    assert moved[0, 0, 2, 4] == 9  # (row 1, col 2) -> (row 2, col 4)
    with pytest.raises(ValueError, match="shift by less"):
        translate(images, 6, 0)


def test_shift_report_matches_a_per_image_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 5, (10,))

    def transform(x, y):
        return (x.float() / 127.5 - 1, y)

    shifts = (1, 3)
    report = shift_report(model, [(images[:6], labels[:6]), (images[6:], labels[6:])], transform, shifts)

    def logits(array: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(array).float() / 127.5 - 1).double().numpy()

    base = logits(images.numpy())
    assert report["images"] == 10
    assert report["top1"] == pytest.approx(np.mean(base.argmax(1) == labels.numpy()))
    for row in report["rows"]:
        ux, uy = DIRECTIONS[row["direction"]]
        moved = logits(_numpy_translate(images.numpy(), ux * row["shift"], uy * row["shift"]))
        same = np.mean(moved.argmax(1) == base.argmax(1))
        a, b = base - base.mean(1, keepdims=True), moved - moved.mean(1, keepdims=True)
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert row["consistency"] == pytest.approx(same)
        assert row["distance"] == pytest.approx(np.mean(1 - cos), abs=1e-6)
        assert row["top1"] == pytest.approx(np.mean(moved.argmax(1) == labels.numpy()))
    assert {(r["direction"], r["shift"]) for r in report["rows"]} == {(d, s) for d in DIRECTIONS for s in shifts}


def test_centred_cosine_distance_ignores_offset_and_scale():
    a = torch.tensor([[1.0, 2.0, 4.0]])
    assert centred_cosine_distance(a, 3 * a + 7).item() == pytest.approx(0.0, abs=1e-12)
    centred = a - a.mean()
    assert centred_cosine_distance(a, -a).item() == pytest.approx(2.0)
    assert centred_cosine_distance(centred, centred.flip(-1)).item() == pytest.approx(
        1 - float((centred * centred.flip(-1)).sum() / centred.square().sum())
    )
