"""Distillation through the engine: a recipe's ``distill:`` section trains a DeiT student against a teacher
checkpoint; a run stopped mid-epoch and resumed ends bit-identical to an uninterrupted one (teacher, Mixup, bf16
and a distillation token on), the teacher's identity is in the run, and resuming with another teacher is refused."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import vitkit
from train_data import make_image_folder, tiny_recipe
from vitkit.train import train_model
from vitkit.train.callbacks import Callback
from vitkit.train.recipe import recipe_from_dict
from vitkit.train.state import load_checkpoint


class Stop(Exception):
    pass


class StopAt(Callback):  # as if the process died right after this step; steps after the last checkpoint are lost
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, trainer, row):
        if trainer.global_step == self.step:
            raise Stop


def _teacher(path, seed):
    torch.manual_seed(seed)
    teacher = vitkit.create_model("resnet_cifar20", img_size=16, num_classes=4, width=8)
    return vitkit.save_pretrained(teacher, path)


def _recipe(data, runs, teacher, name, cache_mb=0, mixup=0.4, epochs=1, precision="bf16"):
    recipe = tiny_recipe(
        data,
        runs,
        model={"distilled": True, "drop_path_rate": 0.1},
        data={"mixup_alpha": mixup, "hflip": 0.5, "label_smoothing": 0.1},
        train={"epochs": epochs, "batch_size": 16, "precision": precision, "threads": 1, "checkpoint_every_steps": 4,
               "log_every_steps": 3, "run_name": name},
    )  # fmt: skip
    recipe["distill"] = {"teacher": str(teacher), "type": "hard", "alpha": 0.5, "cache_mb": cache_mb}
    return recipe_from_dict(recipe)


def test_distilled_run_resumes_bit_identical_and_refuses_another_teacher(tmp_path):
    data = make_image_folder(tmp_path / "images", train_per_class=24, test_per_class=4)
    teacher = _teacher(tmp_path / "teacher.safetensors", 0)
    runs = tmp_path / "runs"
    recipe = _recipe(data, runs, teacher, "whole")
    assert recipe.objective["name"] == "distillation"
    assert recipe.objective["teacher_sha256"] == hashlib.sha256(teacher.read_bytes()).hexdigest()
    whole = train_model(recipe)

    stopped = _recipe(data, runs, teacher, "stopped")
    with pytest.raises(Stop):
        train_model(stopped, callbacks=[StopAt(6)])  # last checkpoint at step 4
    state = load_checkpoint(runs / "stopped" / "checkpoints" / "last.pt")
    assert state["objective"]["teacher_sha256"] == recipe.objective["teacher_sha256"]

    other = _teacher(tmp_path / "other.safetensors", 1)
    with pytest.raises(ValueError, match="resume with the original teacher"):
        train_model(_recipe(data, runs, other, "stopped"), resume=True)

    resumed = train_model(stopped, resume=True)
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_teacher_cache_trains_as_without_it_and_resumes_bit_identical(tmp_path):
    """Flips only: from the second epoch on the teacher answers partly from the cache; the weights match a run
    without the cache, and a run stopped after the cache has filled resumes bit-identical (its cache restored)."""
    data = make_image_folder(tmp_path / "images", train_per_class=24, test_per_class=4)
    teacher = _teacher(tmp_path / "teacher.safetensors", 0)
    runs = tmp_path / "runs"
    options = {"mixup": 0.0, "epochs": 2, "precision": "fp32"}
    plain = train_model(_recipe(data, runs, teacher, "plain", **options))
    whole = train_model(_recipe(data, runs, teacher, "whole", cache_mb=1, **options))
    for (name, a), (_, b) in zip(plain.model.state_dict().items(), whole.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=name)
    rows = [json.loads(line) for line in (runs / "whole" / "metrics.jsonl").read_text().splitlines()]
    cached = [r["teacher_cached"] for r in rows if r.get("kind") == "step" and "teacher_cached" in r]
    assert cached and max(cached) > 0.2  # 6 steps an epoch: a flipped image is seen again in epoch 2

    stopped = _recipe(data, runs, teacher, "stopped", cache_mb=1, **options)
    with pytest.raises(Stop):
        train_model(stopped, callbacks=[StopAt(9)])  # last checkpoint at step 8, in epoch 2
    saved = load_checkpoint(runs / "stopped" / "checkpoints" / "last.pt")["objective"]["teacher_cache"]
    assert saved["keys"] is not None
    resumed = train_model(stopped, resume=True)
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
