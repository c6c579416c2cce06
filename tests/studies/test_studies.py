"""Each built-in study's ``--quick`` version end to end on a tiny image folder made here: its runs, table, pictures,
and numbers checked against an independent evaluation of the saved models; a second call trains nothing."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from train_data import make_image_folder
from vitkit.eval.api import evaluate
from vitkit.studies import run_study
from vitkit.studies.pos_embed import available_kinds
from vitkit.studies.shift import DIRECTIONS
from vitkit.weights.load import load_pretrained

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 classes, 48 training and 16 test images each, at CIFAR's 32x32."""
    return make_image_folder(tmp_path_factory.mktemp("study_data"), size=32)


def _quick(name, data, out):
    return run_study(name, quick=True, out=out, data=data, jobs=1, threads=1, cache=False)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _is_png(path):
    from PIL import Image

    with Image.open(path) as img:
        return path.read_bytes()[:8] == PNG and min(img.size) > 200


def test_data_scale_quick(data, tmp_path):
    out = tmp_path / "data-scale"
    result = _quick("data-scale", data, out)
    rows = _rows(out / "results.csv")
    # 192 training images: 5% -> 10, raised to one batch of 16; 25% -> 48; 100% -> all 192.
    sizes = {(r["model"], float(r["fraction"])): int(r["train_images"]) for r in rows}
    assert sizes == {(m, f): n for m in ("vit", "hybrid", "resnet") for f, n in ((0.05, 16), (0.25, 48), (1.0, 192))}
    for r in rows:  # equal compute: 12 steps of 16 images at every point
        assert int(r["steps"]) == 12 and float(r["epochs"]) == pytest.approx(12 * 16 / int(r["train_images"]))
    full = [r for r in rows if float(r["fraction"]) == 1.0]
    assert all((r["class_min"], r["class_max"]) == ("48", "48") for r in full)  # the fixture's 48 per class
    # The table's accuracy is the saved model's, evaluated independently by `vitkit eval`'s function.
    row = next(r for r in full if r["model"] == "hybrid")
    report = evaluate(out / "runs" / "hybrid-100pct" / "model.safetensors", str(data), device="cpu", num_workers=0)
    assert float(row["top1"]) == pytest.approx(report.top1)
    assert _is_png(out / "accuracy_vs_data.png")
    text = (out / "results.md").read_text()
    assert "12 optimiser steps at batch 16" in text and "| ResNet-20 | 100% | 192 |" in text
    # Run again: everything is finished, nothing is trained (no result file is rewritten).
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    again = _quick("data-scale", data, out)
    assert len(stamps) == 9 and {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert [r.final for r in again.records] == [r.final for r in result.records]


def test_pos_embed_quick(data, tmp_path):
    out = tmp_path / "pos-embed"
    _quick("pos-embed", data, out)
    rows = _rows(out / "results.csv")
    kinds = available_kinds()
    assert [r["kind"] for r in rows] == kinds and {"none", "learned", "learned2d", "sincos2d"} <= set(kinds)
    for kind in kinds:  # the override reached the model: the saved weights are of that kind
        assert load_pretrained(out / "runs" / f"vit-{kind}" / "model.safetensors").cfg.pos_embed == kind
        assert _is_png(out / "pictures" / f"{kind}.png")
    none = next(r for r in rows if r["kind"] == "none")
    for r in rows:
        assert float(r["vs_none"]) == pytest.approx(100 * (float(r["top1"]) - float(none["top1"])), abs=1e-4)
    assert _is_png(out / "position_embeddings.png")
    assert "![position-embedding similarity](position_embeddings.png)" in (out / "results.md").read_text()


def test_inductive_bias_quick(data, tmp_path):
    out = tmp_path / "inductive-bias"
    result = _quick("inductive-bias", data, out)
    rows = _rows(out / "results.csv")
    assert len(rows) == 3 * len(DIRECTIONS) * 8
    assert all(0 <= float(r["consistency"]) <= 1 and 0 <= float(r["distance"]) <= 2 for r in rows)
    # The curve: evaluations at steps 2, 4, 6, 8 (two per doubling of 12, on multiples of the logging interval 2),
    # then the engine's final one at step 12.
    curve = _rows(out / "curve.csv")
    assert sorted({int(r["step"]) for r in curve if r["model"] == "vit"}) == [2, 4, 6, 8, 12]
    assert _is_png(out / "shift.png") and _is_png(out / "accuracy_vs_steps.png")
    # Independent check of one model: the whole test split through `vitkit eval`'s function, and the 1-pixel x shift
    # through NumPy's reflection padding.
    record = next(r for r in result.records if r.labels["model"] == "resnet")
    path = out / "runs" / "resnet" / "model.safetensors"
    assert record.extra["test_top1"] == pytest.approx(evaluate(path, str(data), device="cpu", num_workers=0).top1)
    model = load_pretrained(path).eval()
    images = np.stack([np.asarray(_image(p)) for p in sorted((data / "test").glob("*/*.png"))]).transpose(0, 3, 1, 2)
    moved = np.pad(images, ((0, 0), (0, 0), (0, 0), (1, 0)), mode="reflect")[..., :32]
    with torch.no_grad():
        answer = [model((torch.from_numpy(x).float() / 255 - 0.5) / 0.5).argmax(1) for x in (images, moved)]
    x1 = next(r for r in record.extra["shift"]["rows"] if r["direction"] == "x" and r["shift"] == 1)
    assert x1["consistency"] == pytest.approx((answer[0] == answer[1]).double().mean().item())
    table = json.loads((out / "runs" / "resnet" / "result.json").read_text())
    assert table["extra"]["shift"]["images"] == 64


def _image(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB").copy()


@pytest.mark.slow
def test_parallel_jobs_give_the_runs_of_one_process(data, tmp_path):
    """Two spawned worker processes train the same runs as the study's own process: same numbers, same curve."""
    serial = _quick("inductive-bias", data, tmp_path / "serial")
    parallel = run_study("inductive-bias", quick=True, out=tmp_path / "parallel", data=data, jobs=2, threads=1,
                         cache=False)  # fmt: skip
    assert [(r.name, r.final, r.extra) for r in parallel.records] == [
        (r.name, r.final, r.extra) for r in serial.records
    ]
    assert (tmp_path / "parallel" / "curve.csv").read_text() == (tmp_path / "serial" / "curve.csv").read_text()
