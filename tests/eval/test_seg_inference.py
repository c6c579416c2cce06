"""Sliding-window inference: window placement and counts worked out by hand, equality with whole-image inference
for a per-pixel model, padding of small images, the test-scale resize; the overlay and the label PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.eval.seg_inference import (
    overlay,
    save_label_png,
    segment,
    slide_inference,
    slide_windows,
    whole_inference,
    window_counts,
)


def test_windows_and_counts_by_hand():
    # H=10, W=7, crop 4, stride 3: rows start 0, 3, 6 (the last ends at 10); columns 0 and 3 (moved back to end at 7)
    assert slide_windows(10, 7, 4, 3) == [
        (0, 4, 0, 4), (0, 4, 3, 7), (3, 7, 0, 4), (3, 7, 3, 7), (6, 10, 0, 4), (6, 10, 3, 7),
    ]  # fmt: skip
    rows = torch.tensor([1, 1, 1, 2, 1, 1, 2, 1, 1, 1])  # rows 3 and 6 are in two row bands
    cols = torch.tensor([1, 1, 1, 2, 1, 1, 1])  # column 3 is in both column bands
    assert torch.equal(window_counts(10, 7, 4, 3), rows[:, None] * cols[None, :])
    # mmseg's grid for ADE20K at 512 x 683: (512-512+340)//341+1 = 1 row, (683-512+340)//341+1 = 2 columns
    assert slide_windows(512, 683, 512, 341) == [(0, 512, 0, 512), (0, 512, 171, 683)]
    assert slide_windows(3, 5, 8, 4) == [(0, 3, 0, 5)]  # smaller than the crop: one window, the whole image


@pytest.mark.parametrize("h, w, crop, stride", [(37, 53, 16, 11), (64, 64, 32, 32), (20, 90, (20, 24), (10, 7))])
def test_windows_cover_every_pixel_inside_the_image(h, w, crop, stride):
    ch, cw = crop if isinstance(crop, tuple) else (crop, crop)
    windows = slide_windows(h, w, crop, stride)
    assert all(0 <= y1 < y2 <= h and 0 <= x1 < x2 <= w for y1, y2, x1, x2 in windows)
    assert all((y2 - y1, x2 - x1) == (ch, cw) for y1, y2, x1, x2 in windows)  # full-size windows only
    assert max(y2 for _, y2, _, _ in windows) == h and max(x2 for _, _, _, x2 in windows) == w
    assert int(window_counts(h, w, crop, stride).min()) >= 1


def _conv_model(k: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, k, kernel_size=1).eval()


@pytest.mark.parametrize("size", [(40, 61), (24, 24), (13, 30), (9, 7)])  # bigger, equal, one side and both smaller
def test_slide_equals_whole_for_a_per_pixel_model(size):
    model = _conv_model()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        whole = whole_inference(model, x)
    slide = slide_inference(model, x, crop=24, stride=16, window_batch=3)
    assert slide.shape == whole.shape == (2, 5, *size)
    torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-5)


def test_overlapping_logits_are_averaged_over_the_windows():
    # The model answers every pixel of a window with the window's mean: at a pixel, sliding inference must give
    # the mean of the means of the windows that cover it (windows of the hand example above).
    model = lambda x: x.mean(dim=(2, 3), keepdim=True).expand(-1, 1, *x.shape[2:])
    x = torch.arange(70, dtype=torch.float32).view(1, 1, 10, 7)
    windows = [(0, 4, 0, 4), (0, 4, 3, 7), (3, 7, 0, 4), (3, 7, 3, 7), (6, 10, 0, 4), (6, 10, 3, 7)]
    expected = torch.zeros(10, 7)
    count = torch.zeros(10, 7)
    for y1, y2, x1, x2 in windows:
        expected[y1:y2, x1:x2] += x[0, 0, y1:y2, x1:x2].mean()
        count[y1:y2, x1:x2] += 1
    out = slide_inference(model, x, crop=4, stride=3, window_batch=4)
    torch.testing.assert_close(out[0, 0], expected / count)


def test_small_images_are_padded_to_the_crop_for_fixed_size_models():
    seen = []

    def fixed(x):  # a model that only accepts 16 x 16 inputs, e.g. a ViT without position-embedding resampling
        seen.append(tuple(x.shape[-2:]))
        assert x.shape[-2:] == (16, 16)
        return torch.cat([x[:, :1], -x[:, :1]], dim=1)

    x = torch.rand(1, 3, 10, 12)
    labels = segment(fixed, x, mode="slide", crop=16, stride=8)
    assert seen == [(16, 16)] and labels.shape == (1, 10, 12)
    assert torch.equal(labels[0], (x[0, 0] <= 0).long())  # the padding was cut off again


def test_segment_resizes_to_the_test_scale_and_back_to_the_original_size():
    seen = []

    def model(x):
        seen.append(tuple(x.shape[-2:]))
        return torch.nn.functional.avg_pool2d(torch.cat([x[:, :1], 1 - x[:, :1]], 1), 4)  # logits at 1/4

    y = torch.linspace(0, 1, 40)[:, None].expand(40, 60)
    x = torch.stack([y, y, y])[None]  # (1, 3, 40, 60): the top half favours class 1, the bottom class 0
    labels = segment(model, x, mode="whole", scale=(1000, 20), size_divisor=8, out_size=(40, 60))
    assert seen == [(24, 32)]  # short side 20 (x 30 long), rounded up to multiples of 8
    assert labels.shape == (1, 40, 60)
    assert labels[0, :15].eq(1).all() and labels[0, 25:].eq(0).all()
    seen.clear()
    segment(model, x, mode="slide", crop=16, stride=12, scale=16)
    assert seen and set(seen) == {(16, 16)}  # short side 16 -> 16 x 24: two windows, one call (window_batch 4)
    with pytest.raises(ValueError, match="mode must be 'whole' or 'slide'"):
        segment(model, x, mode="sliding")


def test_overlay_blends_at_half_and_keeps_ignored_pixels():
    image = np.zeros((2, 2, 3), np.uint8)
    image[:] = (100, 50, 0)
    labels = np.array([[0, 1], [255, 7]])  # 255 ignored, 7 has no colour
    out = np.asarray(overlay(image, labels, [(200, 150, 255), (0, 0, 0)]))
    assert out[0, 0].tolist() == [150, 100, 128]  # (100 + 200) / 2, (50 + 150) / 2, 255 / 2 rounded to even
    assert out[0, 1].tolist() == [50, 25, 0]
    assert out[1, 0].tolist() == [100, 50, 0] and out[1, 1].tolist() == [100, 50, 0]
    tensor_out = overlay(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(labels), [(200, 150, 255)])
    assert np.asarray(tensor_out)[0, 0].tolist() == [150, 100, 128]


def test_label_png_holds_ids_and_the_palette(tmp_path):
    labels = np.array([[0, 1, 2], [2, 1, 255]])
    palette = [(10, 20, 30), (40, 50, 60), (70, 80, 90)]
    path = save_label_png(torch.from_numpy(labels), tmp_path / "pred.png", palette)
    with Image.open(path) as img:
        assert img.mode == "P"
        assert np.array_equal(np.asarray(img), labels)
        assert img.getpalette()[:9] == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    with pytest.raises(ValueError, match=r"ids 0..255.*16-bit PNG"):
        save_label_png(np.array([[0, 300]]), tmp_path / "big.png", palette)


def test_evaluation_items_flow_through_segment_into_the_metrics(tmp_path):
    from vitkit.data.augment import normalize
    from vitkit.data.seg_config import SegDataConfig
    from vitkit.data.seg_datasets import build_seg_dataset
    from vitkit.data.seg_synth import make_seg
    from vitkit.eval.seg_metrics import SegMetricAccumulator

    make_seg(tmp_path / "s", train=0, val=2, size=32, seed=0)
    cfg = SegDataConfig.preset(
        "seg_synth", dataset=str(tmp_path / "s"), eval_scale=(96, 40), eval_crop=24, eval_stride=16, num_workers=0
    )
    val = build_seg_dataset(cfg, "val")
    model = _conv_model(k=val.num_classes)
    acc = SegMetricAccumulator(val.num_classes)
    labelled = 0
    for image, mask in val:
        assert min(image.shape[-2:]) == 40 and min(mask.shape) == 32  # the model sees the test scale
        x = normalize(image[None], cfg.mean, cfg.std)
        pred = segment(model, x, mode="slide", crop=cfg.eval_crop, stride=cfg.eval_stride, out_size=tuple(mask.shape))
        acc.update(pred, mask[None])
        labelled += int((mask != 255).sum())
    assert acc.compute().num_pixels == labelled  # every labelled pixel at its original size, once
