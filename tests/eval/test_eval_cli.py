"""The train -> eval -> predict -> fine-tune -> few-shot chain from the command line, as a user runs it, on a tiny
learnable image folder; each step's output is checked against another step's or against the known labels."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from train_data import CLASSES, make_image_folder, tiny_recipe
from train_data import run_vitkit as _vitkit
from vitkit import load_pretrained


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(image folder, run folder) of a tiny model trained by `vitkit train`."""
    tmp = tmp_path_factory.mktemp("cli")
    data = make_image_folder(tmp / "images")
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_recipe(data, tmp / "runs", optim={"lr": 1e-2}, train={"epochs": 16})))
    result = _vitkit("train", "--config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "final: top1 " in result.stdout
    again = _vitkit("train", "--config", config)  # same run folder without --resume: refused, with the fix
    assert again.returncode == 2 and "--resume" in again.stderr
    return data, tmp / "runs" / "tiny", config


def test_eval_reports_what_training_measured_and_writes_the_confusion_matrix(trained):
    data, run, _ = trained
    result = _vitkit("eval", "--checkpoint", run / "model.safetensors", "--data", data, "--json", "--workers", "0")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in rows if r["kind"] == "epoch"][-1]
    assert metrics["top1"] == pytest.approx(final["top1"]) and metrics["top1"] >= 0.9
    assert metrics["num_samples"] == 64 and metrics["classes"] == CLASSES
    assert sum(metrics["per_class"].values()) / 4 == pytest.approx(metrics["top1"])  # balanced test split
    assert (run / "eval-test" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    text = _vitkit("eval", "--checkpoint", run / "checkpoints" / "last.pt", "--data", data, "--workers", "0")
    assert text.returncode == 0 and "top-1" in text.stdout and "north_east" in text.stdout


def test_predict_labels_images_by_class_name(trained):
    data, run, _ = trained
    images = [data / "test" / name / f"{i}.png" for name in CLASSES for i in range(3)]
    result = _vitkit("predict", *images, "--checkpoint", run / "model.safetensors", "--topk", "2", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [o["image"] for o in out] == [str(p) for p in images]
    for item in out:
        probs = [t["prob"] for t in item["top"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    correct = sum(o["top"][0]["label"] == p.parent.name for o, p in zip(out, images))
    assert correct >= 10  # of 12; the model scores >= 90% on this split
    plain = _vitkit("predict", images[0], "--checkpoint", run / "model.safetensors", "--topk", "1")
    assert plain.returncode == 0 and out[0]["top"][0]["label"] in plain.stdout


def test_finetune_at_twice_the_resolution_resamples_positions_and_logs_before_and_after(trained, tmp_path):
    data, run, _ = trained
    recipe = tiny_recipe(
        data,
        tmp_path,
        data={"img_size": 32},
        optim={"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "clip_grad_norm": 1.0},
        train={"epochs": 1, "eval_at_start": True},
    )
    recipe["name"] = "ft"
    config = tmp_path / "ft.yaml"
    config.write_text(yaml.safe_dump(recipe))
    result = _vitkit("finetune", "--config", config, "--checkpoint", run / "model.safetensors", "--img-size", "32")
    assert result.returncode == 0, result.stdout + result.stderr
    model = load_pretrained(tmp_path / "ft" / "model.safetensors")
    assert model.cfg.img_size == (32, 32) and model.pos_embed.shape == (1, 1 + 8 * 8, 32)
    rows = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1]  # before any fine-tuning step, and after one epoch
    assert epochs[0]["top1"] > 0.4  # resampled embeddings keep most of what was learnt (chance: 0.25)
    # The starting point really is the trained model resampled: its weights outside the positions are unchanged.
    start = load_pretrained(run / "model.safetensors", img_size=32)
    before = load_pretrained(run / "model.safetensors")
    torch.testing.assert_close(start.blocks[0].attn.qkv.weight, before.blocks[0].attn.qkv.weight)


def test_fewshot_linear_probe_on_frozen_features(trained):
    data, run, _ = trained
    result = _vitkit(
        "fewshot", "--checkpoint", run / "model.safetensors", "--data", data, "--shots", "1,5", "--seeds", "2",
        "--json", "--workers", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) >= {"1", "5", "l2_reg", "seeds"} and out["seeds"] == [0, 1]
    assert len(out["5"]["per_seed"]) == 2 and out["5"]["mean"] >= 0.8  # features separate the classes
    assert (
        _vitkit("fewshot", "--checkpoint", run / "model.safetensors", "--data", data, "--shots", "1,x").returncode == 2
    )


def test_errors_name_the_problem(trained, tmp_path):
    data, run, config = trained
    missing = _vitkit("eval", "--checkpoint", tmp_path / "nope.safetensors", "--data", data)
    assert missing.returncode == 2 and "not found" in missing.stderr
    typo = _vitkit("train", "--config", config, "--set", "optim.lrr=1")
    assert typo.returncode == 2 and "valid keys" in typo.stderr and "'lr'" in typo.stderr
    no_image = _vitkit("predict", tmp_path / "nope.png", "--checkpoint", run / "model.safetensors")
    assert no_image.returncode == 2 and "nope.png" in no_image.stderr
