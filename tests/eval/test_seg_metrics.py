"""Segmentation metrics against numbers worked out by hand and against a float64 NumPy count per class; summing
areas over the set versus averaging per image; bad input; the confusion-matrix PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.eval.seg_metrics import SegMetricAccumulator, plot_seg_confusion

I = 255  # ignore_index


def _metrics(pred, label, k: int):
    acc = SegMetricAccumulator(k, ignore_index=I)
    acc.update(torch.tensor(pred), torch.tensor(label))
    return acc.compute([f"c{i}" for i in range(k)])


def test_hand_computed_example_with_an_ignored_pixel_and_an_absent_class():
    label = [[0, 0, 1, I], [1, 2, 2, 2]]
    pred = [[0, 1, 1, 0], [1, 2, 0, 2]]  # the 0 under the ignored label must not count as a class-0 prediction
    r = _metrics(pred, label, k=4)
    # class 0: label 2 px, pred 2 px (ignored one excluded), both 1 px -> IoU 1/(2+2-1), Acc 1/2
    # class 1: label 2, pred 3, both 2 -> IoU 2/3, Acc 2/2;  class 2: label 3, pred 2, both 2 -> IoU 2/3, Acc 2/3
    # class 3: in neither map -> NaN, left out of the means
    assert r.iou[:3] == pytest.approx([1 / 3, 2 / 3, 2 / 3]) and math.isnan(r.iou[3])
    assert r.acc[:3] == pytest.approx([1 / 2, 1, 2 / 3]) and math.isnan(r.acc[3])
    assert r.mIoU == pytest.approx(5 / 9)
    assert r.mAcc == pytest.approx(13 / 18)
    assert r.aAcc == pytest.approx(5 / 7)
    assert r.num_pixels == 7
    d = r.to_dict()
    assert d["per_class"]["c3"] == {"IoU": None, "Acc": None} and d["mIoU"] == pytest.approx(5 / 9)
    text = r.format()
    assert "c3" in text and "nan" in text and "mIoU 55.56" in text and "aAcc 71.43" in text


def test_a_class_predicted_but_never_labelled_counts_as_iou_zero():
    label = [[0, 0, 1, I], [1, 2, 2, 2]]
    pred = [[0, 1, 1, 0], [1, 2, 3, 2]]  # class 3 predicted once where the label is 2
    r = _metrics(pred, label, k=4)
    # class 0: label 2, pred 1, both 1 -> 1/2; class 3: union 1, intersection 0 -> IoU 0; its Acc is 0/0 -> NaN
    assert r.iou == pytest.approx([1 / 2, 2 / 3, 2 / 3, 0.0])
    assert math.isnan(r.acc[3])
    assert r.mIoU == pytest.approx(11 / 24) and r.mAcc == pytest.approx(13 / 18) and r.aAcc == pytest.approx(5 / 7)


def _numpy_reference(preds, labels, k):
    """Per class, float64 areas from boolean masks over all images at once (no confusion matrix, no bincount)."""
    p = np.concatenate([x.ravel() for x in preds]).astype(np.float64)
    t = np.concatenate([x.ravel() for x in labels]).astype(np.float64)
    keep = t != I
    p, t = p[keep], t[keep]
    inter = np.array([np.sum((p == c) & (t == c)) for c in range(k)], np.float64)
    area_p = np.array([np.sum(p == c) for c in range(k)], np.float64)
    area_t = np.array([np.sum(t == c) for c in range(k)], np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (area_p + area_t - inter)
        acc = inter / area_t
    return iou, acc, np.nanmean(iou), np.nanmean(acc), inter.sum() / area_t.sum()


def test_random_maps_match_a_float64_numpy_count_and_merge_adds_up():
    rng = np.random.default_rng(0)
    k = 6
    labels = [rng.integers(0, k - 1, size=(3, 17, 23)) for _ in range(4)]  # class 5 never labelled
    for lab in labels:
        lab[rng.uniform(size=lab.shape) < 0.1] = I
    preds = [
        np.where(rng.uniform(size=lab.shape) < 0.6, np.clip(lab, 0, k - 1), rng.integers(0, k, lab.shape))
        for lab in labels
    ]
    whole = SegMetricAccumulator(k, ignore_index=I)
    halves = [SegMetricAccumulator(k, ignore_index=I) for _ in range(2)]
    for n, (p, t) in enumerate(zip(preds, labels)):
        whole.update(torch.from_numpy(p), torch.from_numpy(t))
        halves[n % 2].update(torch.from_numpy(p), torch.from_numpy(t))
    iou, acc, miou, macc, aacc = _numpy_reference(preds, labels, k)
    r = whole.compute()
    np.testing.assert_allclose(r.iou, iou, rtol=1e-12)
    np.testing.assert_allclose(r.acc, acc, rtol=1e-12)  # NaN for class 5 on both sides
    assert r.mIoU == pytest.approx(miou, rel=1e-12) and r.mAcc == pytest.approx(macc, rel=1e-12)
    assert r.aAcc == pytest.approx(aacc, rel=1e-12)
    merged = halves[0].merge(halves[1])
    assert torch.equal(merged.confusion, whole.confusion)


def test_summing_areas_over_the_set_differs_from_averaging_per_image():
    # Image A (2x2): all class 0, predicted right -> its own mIoU is 1 (class 1 absent: NaN, not counted).
    # Image B (10x10): half class 0, half class 1, everything predicted 1 -> IoU 0 and 50/100, its mIoU 0.25.
    a_label, a_pred = np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64)
    b_label = np.zeros((10, 10), np.int64)
    b_label[5:] = 1
    b_pred = np.ones((10, 10), np.int64)
    per_image = [_metrics(p, t, k=2).mIoU for p, t in ((a_pred, a_label), (b_pred, b_label))]
    assert per_image == pytest.approx([1.0, 0.25])
    acc = SegMetricAccumulator(2, ignore_index=I)
    acc.update(torch.from_numpy(a_pred), torch.from_numpy(a_label))
    acc.update(torch.from_numpy(b_pred), torch.from_numpy(b_label))
    # Summed: class 0 has label 54 px, prediction 4 px, overlap 4 -> 4/54; class 1: 50/100 -> mIoU (2/27 + 1/2) / 2
    assert acc.compute().mIoU == pytest.approx(31 / 108)
    assert np.mean(per_image) == pytest.approx(0.625)


def test_bad_input_raises_one_line_that_names_the_problem():
    acc = SegMetricAccumulator(3, ignore_index=I)
    with pytest.raises(ValueError, match=r"label ids \[3, 7\] outside 0..2 .*class list"):
        acc.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.tensor([[[0, 3], [7, I]]]))
    with pytest.raises(ValueError, match=r"differ in shape; resize the logits"):
        acc.update(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"predicted ids outside 0..2"):
        acc.update(torch.full((2, 2), 5), torch.zeros(2, 2, dtype=torch.long))
    assert int(acc.confusion.sum()) == 0  # nothing half-counted
    with pytest.raises(ValueError, match="cannot merge 4-class"):
        acc.merge(SegMetricAccumulator(4))


def test_confusion_png_for_150_classes(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(1)
    label = torch.from_numpy(rng.integers(0, 150, size=(64, 64)))
    pred = torch.where(torch.from_numpy(rng.uniform(size=(64, 64)) < 0.7), label, torch.zeros_like(label))
    acc = SegMetricAccumulator(150)
    acc.update(pred, label)
    path = plot_seg_confusion(acc.compute([f"class {i}" for i in range(150)]), str(tmp_path / "confusion.png"))
    with Image.open(path) as img:
        assert img.format == "PNG" and min(img.size) >= 500
        assert len(np.unique(np.asarray(img.convert("L")))) > 10
