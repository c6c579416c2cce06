"""Segmentation data: the config, joint transforms (alignment, valid ids, padding, cat_max_ratio, mmseg's rescale
and photometric rules), the three layouts made at test time, and what bad input does."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data.loader import create_loader
from vitkit.data.seg_config import SegDataConfig
from vitkit.data.seg_datasets import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    VOC_CLASSES,
    build_seg_dataset,
    list_pairs,
    voc_colormap,
)
from vitkit.data.seg_transforms import SegTrainTransform, crop_offset, photometric_distortion, rescale_size

IGNORE = 255
# Pure colours whose blends never equal another one exactly: an image pixel of exactly one of these colours lies
# inside that class's region, whatever bilinear resampling mixed in at the region borders.
COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)], np.uint8)


def _blocks(h: int, w: int, seed: int, k: int = 4) -> np.ndarray:
    """A label map of rectangles of random classes (h, w) int64."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.int64)
    for _ in range(12):
        y, x = rng.integers(0, h), rng.integers(0, w)
        mask[y : y + rng.integers(4, h // 2), x : x + rng.integers(4, w // 2)] = rng.integers(0, k)
    return mask


# ---------------------------------------------------------------------------------------------- config
def test_config_is_strict_and_round_trips():
    with pytest.raises(TypeError, match=r"unknown SegDataConfig field\(s\) \['crop'\].*valid fields"):
        SegDataConfig(crop=512)
    with pytest.raises(TypeError, match="unknown SegDataConfig"):
        SegDataConfig().replace(img_sise=3)
    cfg = SegDataConfig(img_size=64, eval_crop=(32, 48), eval_stride=(16, 24), eval_scale=100)
    assert cfg.img_size == (64, 64) and cfg.eval_crop == (32, 48) and cfg.eval_scale == 100
    assert SegDataConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    synth = SegDataConfig.preset("seg_synth", num_workers=0)
    assert synth.img_size == (256, 256) and synth.eval_stride == (171, 171) and synth.num_workers == 0
    default = SegDataConfig()  # mmseg's ADE20K recipe
    assert default.scale == (2048, 512) and default.eval_crop == (512, 512) and default.eval_stride == (341, 341)
    assert default.mean == pytest.approx((123.675 / 255, 116.28 / 255, 103.53 / 255))


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"layout": "coco"}, "layout must be one of"),
        ({"eval_mode": "sliding"}, "eval_mode must be one of"),
        ({"eval_stride": 600}, "exceeds eval_crop"),
        ({"cat_max_ratio": 0}, r"cat_max_ratio must lie in \(0, 1\]"),
        ({"mean": (123.0, 116.0, 103.0)}, "0..1 scale"),
        ({"ratio_range": (2.0, 0.5)}, "ratio_range"),
    ],
)
def test_config_rejects_bad_values(changes, match):
    with pytest.raises(ValueError, match=match):
        SegDataConfig(**changes)


# ------------------------------------------------------------------------------------------ transforms
def test_rescale_size_follows_mmcv_imrescale():
    assert rescale_size(683, 512, (2048, 512)) == (683, 512)  # short side already 512
    assert rescale_size(683, 512, (1024, 256)) == (342, 256)  # ratio 0.5: 341.5 rounds half up
    assert rescale_size(2000, 400, (2048, 512)) == (2048, 410)  # the long side binds: 400 * 1.024 = 409.6
    assert rescale_size(300, 200, 100) == (150, 100)  # a single number is the short side


@pytest.mark.parametrize("seed", range(6))
def test_image_and_mask_stay_aligned_through_rescale_crop_and_flip(seed):
    mask = _blocks(90, 120, seed)
    image = Image.fromarray(COLOURS[mask], "RGB")  # the image is drawn from the mask
    cfg = SegDataConfig(img_size=(64, 80), scale=(160, 120), ratio_range=(0.5, 2.0), hflip=0.5, photometric=False)
    img, out = SegTrainTransform(cfg)(image, mask, random.Random(seed))
    assert img.shape == (3, 64, 80) and img.dtype == torch.uint8
    assert out.shape == (64, 80) and out.dtype == torch.int64
    pixels = img.permute(1, 2, 0).numpy()
    checked = 0
    for k, colour in enumerate(COLOURS):
        pure = (pixels == colour).all(-1)
        assert (out.numpy()[pure] == k).all(), f"class {k} pixels of the image are labelled otherwise"
        checked += int(pure.sum())
    labelled = int((out != IGNORE).sum())
    assert checked > 0.6 * labelled  # most of the crop is region interior, so the check has teeth
    assert set(torch.unique(out).tolist()) <= set(np.unique(mask).tolist()) | {IGNORE}  # no interpolated ids


def test_flip_moves_both_and_small_images_are_padded_with_ignore():
    mask = np.zeros((20, 30), np.int64)
    mask[:, :10] = 1  # class 1 on the left
    image = Image.fromarray(COLOURS[mask], "RGB")
    cfg = SegDataConfig(img_size=(32, 40), scale=(30, 20), ratio_range=(1, 1), hflip=1.0, photometric=False)
    img, out = SegTrainTransform(cfg)(image, mask, random.Random(0))
    assert out.shape == (32, 40)
    assert (out[20:] == IGNORE).all() and (out[:, 30:] == IGNORE).all()  # padding at the bottom and right
    assert (out[:20, 20:30] == 1).all() and (out[:20, :20] == 0).all()  # flipped: class 1 now on the right
    assert img[:, :20, 20:30].permute(1, 2, 0).eq(torch.tensor([0, 255, 0], dtype=torch.uint8)).all()
    fill = torch.tensor([round(255 * m) for m in cfg.mean], dtype=torch.uint8)  # 0 once normalised, as mmseg
    assert img[:, 25:, 35:].permute(1, 2, 0).eq(fill).all()


class _Scripted(random.Random):
    """Hands out scripted values to randint/random/uniform/randrange, in call order."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = list(values)

    def _next(self, *args):
        return self.values.pop(0)

    randint = random = uniform = randrange = _next


def test_crop_is_redrawn_while_one_class_dominates():
    mask = np.zeros((10, 40), np.int64)
    mask[:, 30:] = 1  # crops of width 10 at x < 21 hold class 0 only; at x = 25, 75 % of them is class 0
    mask[:, 28:30] = IGNORE
    # draws (top, left): x=0 (one class) -> x=5 (one class) -> x=27 (1 px of class 0, 2 ignored, 7 of class 1:
    # class 1 covers 7/8 >= 0.75) -> x=24 (4 px class 0, 2 ignored, 4 class 1: balanced) -> stop
    rng = _Scripted([0, 0, 0, 5, 0, 27, 0, 24, 0, 3])
    assert crop_offset(mask, (10, 10), 0.75, IGNORE, rng) == (0, 24)
    assert rng.values == [0, 3]  # the draw after the balanced one was not taken
    rng = _Scripted([0, 0] * 11 + [0, 99])
    assert crop_offset(mask, (10, 10), 0.75, IGNORE, rng) == (0, 0)  # ten redraws, then the last one is kept
    assert rng.values == [0, 99]
    rng = _Scripted([0, 0, 0, 24])
    assert crop_offset(mask, (10, 10), 1.0, IGNORE, rng) == (0, 0)  # cat_max_ratio 1: no check at all


def test_cat_max_ratio_makes_balanced_crops_the_rule():
    mask = np.zeros((100, 100), np.int64)
    mask[40:, 40:] = 1  # about 37 % of 40 x 40 crops hold both classes at shares under 75 %
    balanced = lambda c: (c[c != IGNORE] == 1).mean() if (c == 1).any() else 1.0
    shares = {}
    for ratio in (1.0, 0.75):
        crops = []
        for seed in range(200):
            top, left = crop_offset(mask, (40, 40), ratio, IGNORE, random.Random(seed))
            crops.append(mask[top : top + 40, left : left + 40])
        shares[ratio] = np.mean([0.25 < balanced(c) < 0.75 for c in crops])
    assert shares[1.0] < 0.45 and shares[0.75] > 0.95  # with 11 draws: 1 - 0.63 ** 11 = 0.99 expected


def test_photometric_distortion_follows_mmseg_order_and_truncation():
    img = np.array([[[10, 100, 250], [0, 128, 255]]], np.uint8)
    # brightness on (+10.7), contrast last (mode 0), saturation off, hue off, then contrast on (x 1.3)
    rng = _Scripted([0.1, 10.7, 0.9, 0.9, 0.9, 0.1, 1.3])
    out = photometric_distortion(img, rng)
    step1 = np.clip(img.astype(np.float32) + 10.7, 0, 255).astype(np.uint8)  # 20.7 -> 20: truncated, not rounded
    expected = np.clip(step1.astype(np.float32) * 1.3, 0, 255).astype(np.uint8)
    assert out.tolist() == expected.tolist() == [[[26, 143, 255], [13, 179, 255]]]
    # everything off: the image comes back unchanged
    assert photometric_distortion(img, _Scripted([0.9, 0.9, 0.9, 0.9, 0.9])).tolist() == img.tolist()


# -------------------------------------------------------------------------------------------- layouts
def _save_pair(image_path: Path, mask_path: Path, mask: np.ndarray, mode: str = "L") -> None:
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(COLOURS[np.clip(mask, 0, 3) % 4], "RGB").save(image_path, quality=95)
    m = Image.fromarray(mask.astype(np.uint8), mode="L")
    if mode == "P":
        m = m.convert("P")
        m.putpalette([v for c in voc_colormap() for v in c])
    m.save(mask_path)


def make_ade(root: Path, n: int = 3, size: tuple[int, int] = (24, 32)) -> None:
    for split in ("training", "validation"):
        for i in range(n):
            mask = _blocks(*size, seed=i, k=5)  # raw ids 0..4, 0 = 'other'
            stem = f"ADE_{split[:5]}_{i:08d}"
            _save_pair(root / "images" / split / f"{stem}.jpg", root / "annotations" / split / f"{stem}.png", mask)


def test_ade20k_layout_reduces_label_zero(tmp_path):
    make_ade(tmp_path / "ade")
    cfg = SegDataConfig(dataset=str(tmp_path / "ade"), num_workers=0, eval_scale=None)
    val = build_seg_dataset(cfg, "val")
    assert val.source.layout == "ade20k" and val.num_classes == 150 and len(val) == 3
    image, mask = val[0]
    raw = np.asarray(Image.open(tmp_path / "ade/annotations/validation/ADE_valid_00000000.png")).astype(np.int64)
    assert image.shape == (3, 24, 32) and mask.dtype == torch.int64
    assert torch.equal(mask, torch.from_numpy(np.where(raw == 0, IGNORE, raw - 1)))  # 0 -> 255, k -> k - 1
    keep = build_seg_dataset(cfg.replace(reduce_zero_label=False), "val")
    assert torch.equal(keep[0][1], torch.from_numpy(raw))


def test_ade20k_class_names_and_palette_are_mmsegs():
    # digests of mmseg's ADE20KDataset METAINFO (names joined by '|', 'bed ' stripped; palette as bytes)
    assert hashlib.sha256("|".join(ADE20K_CLASSES).encode()).hexdigest().startswith("802996f964bb4db9")
    assert hashlib.sha256(bytes(v for c in ADE20K_PALETTE for v in c)).hexdigest().startswith("ce475c9151035eff")
    assert len(ADE20K_CLASSES) == len(ADE20K_PALETTE) == 150
    assert ADE20K_CLASSES[44] == "chest of drawers" and ADE20K_PALETTE[44] == (6, 51, 255)


def test_voc_layout_reads_palette_indices_not_colours(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    ids = ["2007_000032", "2007_000039", "2007_000063"]
    for n, i in enumerate(ids):
        mask = _blocks(20, 26, seed=n, k=21)
        mask[0, :] = IGNORE  # the object boundary class
        _save_pair(root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png", mask, mode="P")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids[:2]) + "\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text(ids[2] + "\n")
    cfg = SegDataConfig(dataset=str(tmp_path / "VOCdevkit"), num_workers=0, eval_scale=None)
    val = build_seg_dataset(cfg, "val")
    assert val.source.layout == "voc" and val.classes == VOC_CLASSES and len(val) == 1
    assert val.classes[15] == "person" and val.palette[1] == (128, 0, 0) and val.palette[15] == (192, 128, 128)
    _, mask = val[0]
    expected = _blocks(20, 26, seed=2, k=21)
    expected[0, :] = IGNORE
    assert torch.equal(mask, torch.from_numpy(expected))  # ids, 255 kept as ignore, no zero reduction
    train = build_seg_dataset(cfg.replace(img_size=16, scale=(64, 16)), "train")
    assert len(train) == 2 and train[0][1].shape == (16, 16)


def test_plain_folder_with_classes_json_splits_and_numbered_classes(tmp_path, caplog):
    root = tmp_path / "plain"
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            mask = _blocks(16, 16, seed=i, k=3)
            _save_pair(root / split / "images" / f"p{i}.png", root / split / "masks" / f"p{i}.png", mask)
    cfg = SegDataConfig(dataset=str(root), num_workers=0, eval_scale=None, img_size=16, scale=(16, 16))
    with caplog.at_level(logging.INFO, logger="vitkit.data"):
        val = build_seg_dataset(cfg, "val")
    assert val.classes == ["0", "1", "2"] and "no classes.json" in caplog.text and len(val) == 2
    meta = {"classes": ["sky", "road", "car"], "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}
    (root / "classes.json").write_text(json.dumps(meta))
    train = build_seg_dataset(cfg, "train")
    assert train.classes == ["sky", "road", "car"] and train.palette[2] == (7, 8, 9) and len(train) == 3
    assert torch.equal(build_seg_dataset(cfg, "val", augment=False)[1][1], torch.from_numpy(_blocks(16, 16, 1, 3)))


def test_eval_items_resize_the_image_but_keep_the_mask_at_its_stored_size(tmp_path):
    make_ade(tmp_path / "ade", n=1, size=(30, 50))
    cfg = SegDataConfig(dataset=str(tmp_path / "ade"), num_workers=0, eval_scale=(100, 20), eval_size_divisor=8)
    image, mask = build_seg_dataset(cfg, "val")[0]
    assert image.shape == (3, 24, 40)  # short side 20 -> 20 x 33, then rounded up to multiples of 8
    assert mask.shape == (30, 50)


def test_loader_batches_depend_only_on_the_seed(tmp_path):
    make_ade(tmp_path / "ade", n=4, size=(40, 48))
    cfg = SegDataConfig(dataset=str(tmp_path / "ade"), num_workers=0, img_size=24, scale=(48, 40))
    train = build_seg_dataset(cfg, "train")
    batches = [next(iter(create_loader(train, 4, shuffle=True, seed=s))) for s in (3, 3, 4)]
    assert batches[0][0].shape == (4, 3, 24, 24) and batches[0][1].shape == (4, 24, 24)
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[1]))
    assert not torch.equal(batches[0][0], batches[2][0])


# ------------------------------------------------------------------------------------------ bad input
def test_bad_pairs_are_skipped_with_a_line_naming_them_and_strict_raises(tmp_path, caplog):
    root = tmp_path / "ade"
    make_ade(root, n=4)
    (root / "annotations/training/ADE_train_00000001.png").unlink()  # an image without a mask
    Image.new("L", (10, 10)).save(root / "annotations/training/ADE_train_00000002.png")  # wrong size
    cfg = SegDataConfig(dataset=str(root), num_workers=0)
    with caplog.at_level(logging.WARNING, logger="vitkit.data"):
        train = build_seg_dataset(cfg, "train")
    assert len(train) == 2
    assert "skipped 1 image(s) without a usable mask" in caplog.text
    assert "ADE_train_00000001.jpg (no mask)" in caplog.text
    assert "ADE_train_00000002.png (mask 10x10, image 32x24)" in caplog.text
    with pytest.raises(ValueError, match=r"ADE_train_00000001.jpg \(no mask\) in .*\(strict=True; set strict=False"):
        build_seg_dataset(cfg.replace(strict=True), "train")
    (root / "images/training/ADE_train_00000001.jpg").unlink()
    with pytest.raises(ValueError, match=r"ADE_train_00000002.png \(mask 10x10, image 32x24\) \(strict=True"):
        build_seg_dataset(cfg.replace(strict=True), "train")


def test_ids_outside_the_class_list_and_colour_masks_raise(tmp_path):
    root = tmp_path / "plain"
    _save_pair(root / "images/a.png", root / "masks/a.png", np.array([[0, 1], [2, 9]]))
    (root / "classes.json").write_text(json.dumps(["x", "y", "z"]))
    ds = build_seg_dataset(SegDataConfig(dataset=str(root), num_workers=0, eval_scale=None), "train", augment=False)
    with pytest.raises(ValueError, match=r"masks/a.png holds ids \[9\] outside the 3 classes .*classes.json"):
        ds[0]
    Image.new("RGB", (2, 2)).save(root / "masks/a.png")
    with pytest.raises(ValueError, match=r"mask .*a.png is RGB; save class ids in one channel"):
        build_seg_dataset(SegDataConfig(dataset=str(root), num_workers=0), "train")


def test_unknown_folders_and_names_say_what_is_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a segmentation data set: expected images/ \\+ annotations/"):
        list_pairs(tmp_path / "empty", "train")
    with pytest.raises(FileNotFoundError, match="neither a path nor 'seg_synth'"):
        build_seg_dataset(SegDataConfig(dataset="ade21k"), "train")
