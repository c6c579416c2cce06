"""Crops, flips and resizes (per sample and per batch), Mixup/CutMix targets, erasing, BatchAugment."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from data_images import gradient_image, noise_image
from vitkit.data import BatchAugment, DataConfig, color_jitter, mix_batch, normalize, random_erasing, smooth_one_hot
from vitkit.data.geometry import pad_crop_flip, resized_crop, sample_rrc_boxes
from vitkit.data.sample_transforms import EvalTransform, TrainTransform, rrc_box, shift_crop


def _uint8_batch(n: int = 4, h: int = 8, w: int = 10) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8)


# ------------------------------------------------------------------------------------------ geometry
def test_pad_crop_flip_matches_a_per_image_reference():
    x = _uint8_batch(6)
    p = 3
    shift = torch.randint(-p, p + 1, (6, 2))
    flip = torch.tensor([True, False, True, False, False, True])
    out = pad_crop_flip(x, shift, flip)
    for b in range(6):
        padded = np.pad(x[b].numpy(), ((0, 0), (p, p), (p, p)))
        dy, dx = shift[b].tolist()
        ref = padded[:, p + dy : p + dy + 8, p + dx : p + dx + 10]
        ref = ref[:, :, ::-1] if flip[b] else ref
        assert np.array_equal(out[b].numpy(), ref)
        assert torch.equal(
            shift_crop(x[b], dy, dx), torch.from_numpy(padded[:, p + dy : p + dy + 8, p + dx : p + dx + 10].copy())
        )


def test_resized_crop_identity_integer_crop_and_flip():
    x = _uint8_batch(3, 12, 12).float()
    full = torch.tensor([[0.0, 0.0, 12.0, 12.0]]).expand(3, 4)
    assert torch.allclose(resized_crop(x, full, (12, 12)), x, atol=1e-3)
    box = torch.tensor([[2.0, 3.0, 6.0, 5.0]]).expand(3, 4)  # left 2, top 3, 6 wide, 5 high
    assert torch.allclose(resized_crop(x, box, (5, 6)), x[..., 3:8, 2:8], atol=1e-3)
    flipped = resized_crop(x, box, (5, 6), flip=torch.tensor([True, False, True]))
    assert torch.allclose(flipped[0], x[0, :, 3:8, 2:8].flip(-1), atol=1e-3)
    assert torch.allclose(flipped[1], x[1, :, 3:8, 2:8], atol=1e-3)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_resized_crop_matches_pillow_resize_with_a_box(mode):
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[mode]
    img = gradient_image(40, 30)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None]
    # Enlarging a fractional box, shrinking the whole image (antialiased), and a mix of both.
    for box, (w, h) in [((3.5, 2.25, 20.0, 17.5), (50, 41)), ((0, 0, 40, 30), (13, 9)), ((5, 4, 30, 21), (11, 23))]:
        ref = img.resize((w, h), resample, box=(box[0], box[1], box[0] + box[2], box[1] + box[3]))
        ours = resized_crop(x, torch.tensor([box]), (h, w), mode=mode)[0]
        diff = (ours - torch.from_numpy(np.asarray(ref, dtype=np.float32)).permute(2, 0, 1)).abs()
        assert diff.max() <= 1.0, (box, float(diff.max()))  # Pillow rounds to integers, we do not


def _check_boxes(boxes, height, width, scale, ratio):
    left, top, w, h = boxes.unbind(1)
    assert (left >= 0).all() and (top >= 0).all() and (left + w <= width).all() and (top + h <= height).all()
    area = w * h / (height * width)
    aspect = w / h
    # Rounding w and h to whole pixels moves area and aspect a little past the sampled range.
    assert (area >= scale[0] * 0.8).all() and (area <= scale[1] * 1.01 + 1e-6).all()
    assert (aspect >= ratio[0] * 0.9).all() and (aspect <= ratio[1] * 1.1).all()
    return area


def test_random_resized_crop_boxes_follow_scale_and_ratio():
    ratio = (3 / 4, 4 / 3)
    # On a square image every try of area <= 0.5 fits, so the area fraction is U(0.25, 0.5) itself.
    boxes = sample_rrc_boxes(2000, 96, 96, (0.25, 0.5), ratio, torch.Generator().manual_seed(0))
    assert abs(float(_check_boxes(boxes, 96, 96, (0.25, 0.5), ratio).mean()) - 0.375) < 0.01
    # Where large tries do not fit and are redrawn, the batched sampler matches the per-image rule.
    scale = (0.25, 0.8)
    boxes = sample_rrc_boxes(2000, 64, 96, scale, ratio, torch.Generator().manual_seed(0))
    rng = random.Random(0)
    single = torch.tensor([rrc_box(96, 64, scale, ratio, rng) for _ in range(2000)], dtype=torch.float32)
    batched_area = _check_boxes(boxes, 64, 96, scale, ratio)
    single_area = _check_boxes(single, 64, 96, scale, ratio)
    assert abs(float(batched_area.mean()) - float(single_area.mean())) < 0.015
    # An impossible request (a 10:1 crop of a square) falls back to the centred crop within the ratio.
    fallback = sample_rrc_boxes(4, 20, 20, (0.9, 1.0), (10.0, 12.0), torch.Generator().manual_seed(0))
    assert torch.equal(fallback[0], torch.tensor([0.0, 9.0, 20.0, 2.0]))


def test_train_transform_is_deterministic_under_its_seed():
    img = noise_image(50, 40)
    for crop in ("rrc", "pad"):
        t = TrainTransform(DataConfig(img_size=24, train_crop=crop, padding=4))
        a, b, c = t(img, random.Random(1)), t(img, random.Random(1)), t(img, random.Random(2))
        assert a.shape == (3, 24, 24) and a.dtype == torch.uint8
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_eval_transform_resizes_then_centre_crops():
    img = gradient_image(64, 48)
    out = EvalTransform(DataConfig(img_size=32, crop_pct=0.8, interpolation="bilinear"))(img)
    # Two-step reference: shorter side to floor(32 / 0.8) = 40, then the centre 32 x 32.
    resized = img.resize((round(64 * 40 / 48), 40), Image.BILINEAR)
    left, top = (resized.width - 32) // 2, (resized.height - 32) // 2
    ref = np.asarray(resized.crop((left, top, left + 32, top + 32)), dtype=float).transpose(2, 0, 1)
    assert out.shape == (3, 32, 32)
    assert np.abs(out.numpy() - ref).mean() < 2.0
    same = noise_image(32, 32)
    assert torch.equal(
        EvalTransform(DataConfig(img_size=32, crop_pct=1.0))(same),
        torch.from_numpy(np.asarray(same).copy()).permute(2, 0, 1),
    )


# ------------------------------------------------------------------------------------------ mixing
def test_label_smoothing_values():
    t = smooth_one_hot(torch.tensor([2, 0]), 10, 0.1)
    assert torch.allclose(t[0, 2], torch.tensor(0.91)) and torch.allclose(t[0, 0], torch.tensor(0.01))
    assert torch.allclose(t.sum(1), torch.ones(2))


def test_mixup_targets_match_the_pixel_mixture():
    B, K = 6, 7
    x = torch.arange(B, dtype=torch.float32).view(B, 1, 1, 1).expand(B, 3, 4, 4) * 10  # image b is flat 10 b
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    out, targets, lam = mix_batch(
        x, labels, K, mixup_alpha=0.4, smoothing=0.1, generator=torch.Generator().manual_seed(3)
    )
    assert 0 < lam < 1
    assert torch.allclose(targets.sum(1), torch.ones(B))
    for b in range(B):  # pixel = lam * own + (1 - lam) * partner, and the targets carry the same weights
        own, partner = 10.0 * b, 10.0 * (B - 1 - b)
        assert torch.allclose(out[b], torch.full_like(out[b], lam * own + (1 - lam) * partner))
        assert torch.allclose(targets[b, b] - 0.1 / K, torch.tensor(lam * 0.9), atol=1e-6)


def test_cutmix_targets_equal_the_pasted_area():
    B, K = 4, 4
    x = torch.arange(B, dtype=torch.float32).view(B, 1, 1, 1).expand(B, 3, 16, 16).clone()
    labels = torch.arange(B)
    for seed in range(5):
        out, targets, lam = mix_batch(x, labels, K, cutmix_alpha=1.0, generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(targets.sum(1), torch.ones(B))
        for b in range(B):
            own_share = float((out[b, 0] == b).float().mean())
            assert math.isclose(own_share, float(targets[b, b]), abs_tol=1e-6)


def test_mix_prob_zero_leaves_the_batch_alone():
    x = torch.rand(4, 3, 8, 8)
    out, targets, lam = mix_batch(x, torch.arange(4), 4, mixup_alpha=1.0, mix_prob=0.0)
    assert lam == 1.0 and torch.equal(out, x) and torch.equal(targets, torch.eye(4))


# ------------------------------------------------------------------------------------------ erasing, jitter
def test_random_erasing_boxes():
    x = torch.full((16, 3, 32, 32), 5.0)  # noise never equals 5 exactly
    out = random_erasing(x, 1.0, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    erased = (out != 5.0).all(1).float().mean(dim=(1, 2))  # fraction of each image erased
    assert ((erased >= 0.015) & (erased <= 1 / 3 + 0.02)).all()
    assert torch.equal(random_erasing(x, 0.0), x)


def test_color_jitter_ranges():
    x = torch.full((64, 3, 4, 4), 100.0)
    out = color_jitter(x, (0.4, 0.0, 0.0), torch.Generator().manual_seed(0))
    ratio = out[:, 0, 0, 0] / 100.0  # brightness only: the factor itself
    assert ratio.min() >= 0.6 - 1e-6 and ratio.max() <= 1.4 + 1e-6 and ratio.std() > 0.1
    assert torch.equal(color_jitter(x, (0.0, 0.0, 0.0)), x)
    gray = color_jitter(x, (0.0, 0.0, 0.5, 0.3), torch.Generator().manual_seed(0))
    assert torch.allclose(gray, x, atol=1e-3)  # saturation and hue cannot change a gray image


# ------------------------------------------------------------------------------------------ BatchAugment
@pytest.mark.parametrize("preset", ["vit", "imagenet"])
def test_eval_batches_are_normalised_with_the_preset(preset):
    from vitkit.data import norm_preset

    stats = norm_preset(preset)
    cfg = DataConfig(img_size=8, **stats)
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 8, 8)
    out, labels = BatchAugment(cfg, 10, train=False)(x, torch.tensor([3, 4]))
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 4]
    for c in range(3):
        assert torch.allclose(out[0, c], torch.tensor(-stats["mean"][c] / stats["std"][c]))
        assert torch.allclose(out[1, c], torch.tensor((1 - stats["mean"][c]) / stats["std"][c]))
    assert torch.allclose(normalize(x, cfg.mean, cfg.std), out)


def test_train_batch_with_everything_on():
    cfg = DataConfig(
        img_size=16,
        randaugment="rand-m9-n2-mstd0.5",
        color_jitter=0.3,
        random_erasing=0.5,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        label_smoothing=0.1,
    )
    x, y = _uint8_batch(8, 16, 16), torch.randint(0, 5, (8,))
    a_img, a_t = BatchAugment(cfg, 5, train=True, seed=7)(x, y)
    b_img, b_t = BatchAugment(cfg, 5, train=True, seed=7)(x, y)
    c_img, _ = BatchAugment(cfg, 5, train=True, seed=8)(x, y)
    assert a_img.shape == (8, 3, 16, 16) and a_img.dtype == torch.float32
    assert a_t.shape == (8, 5) and torch.allclose(a_t.sum(1), torch.ones(8)) and (a_t > 0).all()
    assert torch.equal(a_img, b_img) and torch.equal(a_t, b_t) and not torch.equal(a_img, c_img)
    plain = BatchAugment(DataConfig(img_size=16), 5, train=True)(x, y)[1]
    assert plain.dtype == torch.int64  # no mixing, no smoothing: hard labels


def test_in_memory_geometry_in_batch_augment():
    stored = _uint8_batch(5, 12, 12)
    cfg = DataConfig(img_size=12, crop_pct=1.0, in_memory=True, train_crop="pad", padding=2, hflip=0.0)
    x, _ = BatchAugment(cfg, 3, train=False)(stored, torch.zeros(5))
    assert torch.allclose(x, normalize(stored, cfg.mean, cfg.std))  # stored at img_size: eval is the identity
    x, _ = BatchAugment(cfg, 3, train=True, seed=0)(stored, torch.zeros(5))
    pixels = torch.round((x * 0.5 + 0.5) * 255)
    for b in range(5):  # every output is one of the 25 shifted crops of its own image
        crops = [
            pad_crop_flip(stored[b : b + 1], torch.tensor([[dy, dx]]), torch.tensor([False]))
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        ]
        assert any(torch.equal(pixels[b : b + 1], c.float()) for c in crops)
    still = cfg.replace(img_size=24, padding=0)  # no shift, no flip: just the resize to img_size
    full = torch.tensor([[0.0, 0.0, 12.0, 12.0]]).expand(5, 4)
    expect = normalize(resized_crop(stored, full, (24, 24), mode=cfg.interpolation), cfg.mean, cfg.std)
    assert torch.allclose(BatchAugment(still, 3, train=True)(stored, torch.zeros(5))[0], expect, atol=1e-5)
    big = cfg.replace(img_size=24, train_crop="rrc")
    assert BatchAugment(big, 3, train=True)(stored, torch.zeros(5))[0].shape == (5, 3, 24, 24)
    assert BatchAugment(big.replace(crop_pct=0.875), 3, train=False)(stored, torch.zeros(5))[0].shape == (5, 3, 24, 24)


def test_preprocess_uses_the_model_preprocessing(tmp_path):
    from vitkit.data import preprocess

    img = gradient_image(40, 30)
    img.save(tmp_path / "a.png")
    x = preprocess([tmp_path / "a.png", img], "deit_tiny_patch16_224")  # ImageNet mean/std, crop 0.875
    assert x.shape == (2, 3, 224, 224) and torch.equal(x[0], x[1])
    pixels = EvalTransform(DataConfig(img_size=224, crop_pct=0.875))(img).double() / 255
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(3, 1, 1)
    assert torch.allclose(x[0].double(), (pixels - mean) / std, atol=1e-5)
