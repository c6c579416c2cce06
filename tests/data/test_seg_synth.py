"""The procedural stand-in for ADE20K: same seed, same bytes; read back as an ADE20K-layout set; what the scenes
hold (every class, objects under a patch, thin structures, colours that do not give the class away); the CLI and
the named set generated on first use."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.cli.main import main
from vitkit.data import seg_datasets, seg_synth
from vitkit.data.seg_config import SegDataConfig
from vitkit.data.seg_datasets import build_seg_dataset
from vitkit.data.seg_synth import CLASSES, make_seg, render_scene, scene_size


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_and_the_ade20k_layout(tmp_path):
    report = make_seg(tmp_path / "a", train=3, val=2, size=48, seed=5)
    make_seg(tmp_path / "b", train=3, val=2, size=48, seed=5)
    make_seg(tmp_path / "c", train=3, val=2, size=48, seed=6)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    assert report.counts == {"train": 3, "val": 2} and "procedural stand-in for ADE20K" in report.format()
    meta = json.loads((tmp_path / "a" / "seg_synth.json").read_text())
    assert meta["classes"] == CLASSES and len(meta["palette"]) == len(CLASSES) == 10
    assert (meta["seed"], meta["size"], meta["train"], meta["val"], meta["reduce_zero_label"]) == (5, 48, 3, 2, True)
    with Image.open(tmp_path / "a/images/training/synth_train_00000001.jpg") as img:
        assert img.format == "JPEG" and min(img.size) == 48
    with Image.open(tmp_path / "a/annotations/training/synth_train_00000001.png") as mask:
        assert mask.mode == "L" and mask.size == img.size
    cfg = SegDataConfig.preset("seg_synth", dataset=str(tmp_path / "a"), img_size=32, scale=(96, 32), num_workers=0)
    val = build_seg_dataset(cfg, "val")
    assert val.source.layout == "ade20k" and val.classes == CLASSES and len(val) == 2
    ids = torch.cat([val[i][1].flatten() for i in range(2)])
    assert set(ids.unique().tolist()) <= set(range(10)) | {255}  # ids 1..10 reduced to 0..9, 'unlabelled' ignored
    image, mask = build_seg_dataset(cfg, "train")[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)


def _scenes(seed: int, n: int, size: int = 128) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, 0, i])
        out.append(render_scene(rng, *scene_size(rng, size)))
    return out


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, np.ndarray]]:
    return _scenes(1, 24)


def _inside_a_patch(mask: np.ndarray, win: int = 16) -> bool:
    """Whether some 16 x 16 window holds pixels of ``mask`` inside but none on its 1-px rim, i.e. a whole
    connected piece smaller than a ViT patch (any path out of the window would cross the rim)."""
    ii = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    area = lambda y0, x0, y1, x1: ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
    y, x = np.meshgrid(np.arange(mask.shape[0] - win + 1), np.arange(mask.shape[1] - win + 1), indexing="ij")
    inner = area(y + 1, x + 1, y + win - 1, x + win - 1)
    return bool(((inner > 0) & (area(y, x, y + win, x + win) == inner)).any())


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    out = np.ones_like(mask)
    for dy in range(3):
        for dx in range(3):
            out &= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
    return out


def test_scenes_hold_every_class_small_objects_and_thin_structures(scenes):
    ids = np.concatenate([m.ravel() for _, m in scenes])
    assert set(range(1, 11)) <= set(np.unique(ids).tolist())
    small = {k: sum(_inside_a_patch(m == k) for _, m in scenes) for k in range(5, 11)}
    assert sum(v > 0 for v in small.values()) >= 3 and sum(small.values()) >= 5  # objects under a 16 x 16 patch
    for name in ("ring", "wire"):  # a 3 x 3 erosion removes most of a 1-4 px wide structure, little of a ball
        k = CLASSES.index(name) + 1
        assert sum(_erode(m == k).sum() for _, m in scenes) < 0.3 * sum((m == k).sum() for _, m in scenes)
    ball = CLASSES.index("ball") + 1
    assert sum(_erode(m == ball).sum() for _, m in scenes) > 0.7 * sum((m == ball).sum() for _, m in scenes)


def test_colour_alone_does_not_tell_the_classes_apart(scenes):
    # The best a per-pixel colour lookup can do (8 levels per channel, the majority class per colour bin, fitted
    # on other scenes) stays below always answering the most common class.
    quantise = lambda img: (lambda q: q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2])((img * 7.999).astype(np.int64))
    counts = np.zeros((512, 11))
    for img, mask in _scenes(2, 24):
        np.add.at(counts, (quantise(img).ravel(), mask.ravel()), 1)
    counts[:, 0] = 0
    table = counts.argmax(1)
    labelled = np.concatenate([m.ravel() for _, m in scenes])
    guessed = np.concatenate([table[quantise(img)].ravel() for img, _ in scenes])
    keep = labelled > 0
    colour_acc = float((guessed[keep] == labelled[keep]).mean())
    majority = np.bincount(labelled[keep]).max() / keep.sum()
    assert colour_acc < majority


def test_make_seg_cli(tmp_path, capsys):
    rc = main(["data", "make-seg", str(tmp_path / "s"), "--train", "2", "--val", "1", "--size", "32", "--seed", "1"])
    assert rc == 0 and "wrote seg_synth (train 2, val 1; 10 classes" in capsys.readouterr().out
    assert len(list((tmp_path / "s/images/training").glob("*.jpg"))) == 2
    assert len(list((tmp_path / "s/annotations/validation").glob("*.png"))) == 1


def test_named_seg_synth_is_generated_once_under_the_data_root(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(seg_datasets, "data_roots", lambda data_root=None: [tmp_path / "roots"])
    monkeypatch.setattr(seg_synth, "DEFAULT_TRAIN", 3)
    monkeypatch.setattr(seg_synth, "DEFAULT_VAL", 2)
    monkeypatch.setattr(seg_synth, "DEFAULT_SIZE", 32)
    cfg = SegDataConfig.preset("seg_synth", img_size=16, scale=(64, 16), num_workers=0)
    with caplog.at_level(logging.INFO, logger="vitkit.data"):
        train = build_seg_dataset(cfg, "train")
    assert len(train) == 3 and (tmp_path / "roots/seg_synth/seg_synth.json").is_file()
    assert "seg_synth not found" in caplog.text and "generating it at" in caplog.text
    assert [p.name for p in (tmp_path / "roots").iterdir()] == ["seg_synth"]  # no staging folder left behind
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vitkit.data"):
        assert len(build_seg_dataset(cfg, "val")) == 2
    assert "generating" not in caplog.text
