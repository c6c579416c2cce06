"""Listing and decoding: image folders, CSV lists, CIFAR pickles, every Pillow mode, corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_images import gradient_image, make_class_folder, make_mixed_folder, noise_image, write_cifar
from vitkit.data import DataConfig, build_dataset, csv_list, image_folder
from vitkit.data.decode import crop_resize, decode, load_rgb
from vitkit.data.sample_transforms import EvalTransform
from vitkit.data.sources import verify


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(load_rgb(path))


def test_image_folder_counts_labels_and_skips_corrupt_files(tmp_path, caplog):
    expect = make_mixed_folder(tmp_path / "data")
    listed = image_folder(tmp_path / "data")
    assert listed.classes == expect["classes"]
    names = [Path(p).name for p in listed.paths]
    assert "notes.txt" not in names and ".hidden.png" not in names and "x.png" not in names
    assert "nested.png" in names  # images in sub-folders of a class belong to it
    with caplog.at_level("WARNING", logger="vitkit.data"):
        checked = verify(listed, "header")
    message = caplog.text
    assert "skipped 3 unreadable image(s)" in message
    for bad in expect["bad"]:
        assert bad in message
    counts = {c: sum(1 for t in checked.targets if checked.classes[t] == c) for c in checked.classes}
    assert counts == expect["counts"]
    assert len(checked.sizes) == len(checked) and (33, 7) in checked.sizes


def test_strict_raises_on_the_first_corrupt_file(tmp_path):
    make_mixed_folder(tmp_path / "data")
    with pytest.raises(ValueError, match="unreadable image .*dog.*strict=True"):
        verify(image_folder(tmp_path / "data"), "header", strict=True)


def test_dataset_items_are_rgb_uint8_at_img_size_for_every_mode(tmp_path, caplog):
    make_mixed_folder(tmp_path / "data")
    cfg = DataConfig(dataset=str(tmp_path / "data"), img_size=16, crop_pct=1.0)
    with caplog.at_level("WARNING", logger="vitkit.data"):
        ds = build_dataset(cfg, "train", augment=False)
    assert "skipped 3" in caplog.text
    assert len(ds) == 11 and ds.classes == ["cat", "dog"]
    assert ds.targets == [0] * 9 + [1] * 2
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.uint8 and y == ds.targets[i]


def test_modes_convert_to_the_expected_rgb_values(tmp_path):
    make_mixed_folder(tmp_path)
    assert (_pixels(tmp_path / "cat" / "gray.png") == 77).all()
    assert (_pixels(tmp_path / "cat" / "rgba.png") == [10, 20, 30]).all()  # alpha dropped
    assert (_pixels(tmp_path / "cat" / "palette.png") == [200, 100, 50]).all()
    # CMYK (255, 0, 0, 0) is cyan: R = 255 - C - K, G = 255 - M - K, B = 255 - Y - K.
    assert (_pixels(tmp_path / "cat" / "cmyk.tif") == [0, 255, 255]).all()
    assert np.abs(_pixels(tmp_path / "cat" / "cmyk.jpg").astype(int) - [0, 255, 255]).max() <= 8
    assert (_pixels(tmp_path / "cat" / "deep16.png") == 128).all()  # 16-bit rescaled (32896 / 257), not clipped
    assert _pixels(tmp_path / "cat" / "odd.bmp").shape == (7, 33, 3)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 8, 8))  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "turned.jpg", quality=95, exif=exif.tobytes())
    out = _pixels(tmp_path / "turned.jpg")
    assert out.shape == (40, 20, 3)  # displayed 20 wide, 40 tall
    assert out[2, 17, 0] > 200 and out[2, 17, 1] < 60  # the block is now at the top-right
    assert out[2, 2, 0] < 60


def test_jpeg_draft_decodes_at_reduced_scale_with_the_same_result(tmp_path):
    gradient_image(800, 600).save(tmp_path / "big.jpg", quality=95)
    with Image.open(tmp_path / "big.jpg") as img:
        assert decode(img, need=(100, 75)).size == (100, 75)  # 1/8 scale is enough
    with Image.open(tmp_path / "big.jpg") as img:
        assert decode(img, need=(101, 75)).size == (200, 150)  # 1/8 would fall short: 1/4
    with Image.open(tmp_path / "big.jpg") as img:
        fast = np.asarray(EvalTransform(DataConfig(img_size=32, crop_pct=1.0))(img), dtype=float)
    full = load_rgb(tmp_path / "big.jpg")
    plan = EvalTransform(DataConfig(img_size=32, crop_pct=1.0)).plan
    reference = np.asarray(crop_resize(full, plan, Image.BICUBIC), dtype=float).transpose(2, 0, 1)
    assert np.abs(fast - reference).mean() < 2.0


def test_missing_directory_and_empty_class_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder(tmp_path / "nope")
    make_class_folder(tmp_path / "data", {"a": 2})
    (tmp_path / "data" / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"empty_class holds no images"):
        image_folder(tmp_path / "data")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.txt").write_text("")
    with pytest.raises(ValueError, match="no class folders"):
        image_folder(tmp_path / "flat")


def test_split_folders_and_flat_folders(tmp_path, caplog):
    make_class_folder(tmp_path / "ds" / "train", {"a": 3, "b": 2})
    make_class_folder(tmp_path / "ds" / "val", {"a": 1, "b": 1})
    cfg = DataConfig(dataset=str(tmp_path / "ds"), img_size=8, verify="none")
    assert len(build_dataset(cfg, "train")) == 5
    assert len(build_dataset(cfg, "val")) == 2
    assert len(build_dataset(cfg, "test")) == 2  # 'test' falls back to the val folder
    make_class_folder(tmp_path / "flat", {"a": 2})
    with caplog.at_level("WARNING", logger="vitkit.data"):
        assert len(build_dataset(cfg.replace(dataset=str(tmp_path / "flat")), "val")) == 2
    assert "no split folders" in caplog.text


def test_csv_list_with_names_or_indices(tmp_path):
    for i in range(3):
        noise_image(8, 8, i).save(tmp_path / f"{i}.png")
    (tmp_path / "named.csv").write_text("path,label\n0.png,zebra\n1.png,ant\n2.png,zebra\n")
    listed = csv_list(tmp_path / "named.csv")
    assert listed.classes == ["ant", "zebra"] and listed.targets == [1, 0, 1]
    (tmp_path / "ids.csv").write_text("0.png,2\n1.png,0\n")
    listed = csv_list(tmp_path / "ids.csv")
    assert listed.targets == [2, 0] and listed.classes == ["0", "1", "2"]
    ds = build_dataset(DataConfig(dataset=str(tmp_path / "named.csv"), img_size=8, crop_pct=1.0), "train")
    assert len(ds) == 3 and ds[0][0].shape == (3, 8, 8)
    (tmp_path / "broken.csv").write_text("0.png,a\nmissing.png,b\n")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        csv_list(tmp_path / "broken.csv")


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_pickles_decode_plane_layout(tmp_path, kind):
    images = write_cifar(tmp_path / "c", kind, per_batch=3)
    cfg = DataConfig(dataset=str(tmp_path / "c"), img_size=32, crop_pct=1.0)
    train, test = build_dataset(cfg, "train", augment=False), build_dataset(cfg, "test")
    assert len(train) == len(images) and len(test) == 3
    assert len(train.classes) == (10 if kind == "cifar10" else 100)
    # Eval at the native size is the identity: pixel (y, x) = (R, G, B) of the stored planes.
    assert torch.equal(train[2][0], torch.from_numpy(images[2]).permute(2, 0, 1))


def test_unreadable_file_at_load_time_is_replaced_and_reported(tmp_path, caplog):
    make_class_folder(tmp_path / "d", {"a": 3})
    cfg = DataConfig(dataset=str(tmp_path / "d"), img_size=8, verify="none")
    ds = build_dataset(cfg, "train")
    Path(ds.source.paths[1]).write_bytes(b"garbage")  # broken after listing
    with caplog.at_level("WARNING", logger="vitkit.data"):
        x, y = ds[1]
    assert x.shape == (3, 8, 8) and "001.png" in caplog.text  # a log line, not a Python warning
    strict = build_dataset(cfg.replace(strict=True), "train")
    with pytest.raises(ValueError, match="001.png"):
        strict[1]
