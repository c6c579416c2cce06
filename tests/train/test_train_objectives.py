"""The engine trains any model with any objective: a plain torch CNN (no config, no vitkit methods) trains, is
killed mid-epoch and resumes bit-identically; a custom objective registered by name is chosen in a recipe and its
loss and logged numbers match a hand computation; parameter groups come from the model's own methods."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from train_data import make_image_folder, one_thread, tiny_recipe  # noqa: F401 (one_thread: fixture)
from vitkit.train import recipe_from_dict, train_model
from vitkit.train.callbacks import Callback
from vitkit.train.loaders import build_loaders
from vitkit.train.objectives import Objective, build_objective, register_objective
from vitkit.train.optim import build_optimizer, param_groups
from vitkit.train.recipe import OptimConfig, dump_recipe
from vitkit.train.run import build_datasets, build_trainer
from vitkit.train.state import load_checkpoint


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("images"), train_per_class=24, test_per_class=8)


pytestmark = pytest.mark.usefixtures("one_thread")


class SmallCNN(nn.Module):
    """A torch-only classifier: batch norm (buffers the EMA must follow) and dropout (RNG the resume restores)."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
        )  # fmt: skip
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # (B, 3, H, W) -> (B, K)


class _Killed(Exception):
    pass


class _KillAt(Callback):
    """Dies right after step ``step`` is logged: everything since the last checkpoint is lost, as in a crash."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, trainer, row) -> None:
        if trainer.global_step == self.step:
            raise _Killed


def _cnn_trainer(data_root, run_dir, seed, callbacks=()):
    recipe = recipe_from_dict(tiny_recipe(
        data_root, run_dir.parent,
        data={"padding": 2, "hflip": 0.5, "mixup_alpha": 0.4, "label_smoothing": 0.1},
        train={"epochs": 3, "batch_size": 8, "ema_decay": 0.9, "checkpoint_every_steps": 5, "log_every_steps": 2},
    ))  # fmt: skip
    data = build_datasets(recipe)
    torch.manual_seed(seed)  # the resumed run starts from other weights: the checkpoint must overwrite them all
    return build_trainer(recipe, SmallCNN(), run_dir, data=data, callbacks=callbacks)


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_plain_cnn_trains_is_killed_and_resumes_bit_identically(data_root, tmp_path):
    whole = _cnn_trainer(data_root, tmp_path / "whole", seed=0)
    _quiet(whole.fit)
    assert whole.global_step == 3 * 12  # 96 images / batch 8

    killed = _cnn_trainer(data_root, tmp_path / "killed", seed=0, callbacks=[_KillAt(18)])
    with pytest.raises(_Killed):
        _quiet(killed.fit)
    state = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert (state["progress"]["global_step"], state["progress"]["step_in_epoch"]) == (15, 3)  # mid-epoch 2
    resumed = _cnn_trainer(data_root, tmp_path / "killed", seed=1)
    _quiet(resumed.fit, state)

    a, b = whole.state_dict(), resumed.state_dict()
    for part in ("model",):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), name
    for name, tensor in a["ema"]["module"].items():
        assert torch.equal(tensor, b["ema"]["module"][name]), f"ema.{name}"
    for key, slot in a["optimizer"]["state"].items():
        for field, value in slot.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][key][field]))
    timings = ("wall_time", "img_per_s", "epoch_time")
    numbers = [
        [{k: v for k, v in r.items() if k not in timings} for r in _rows(tmp_path / n)] for n in ("whole", "killed")
    ]
    assert numbers[0] == numbers[1]  # every logged number (losses, accuracies, lr) equal; rows redone after step 15


def test_a_corrupt_last_checkpoint_falls_back_to_the_newest_intact_one(data_root, tmp_path, caplog):
    from vitkit.train.state import load_resume_checkpoint

    trainer = _cnn_trainer(data_root, tmp_path / "run", seed=0)
    _quiet(trainer.fit)
    folder = tmp_path / "run" / "checkpoints"
    (folder / "last.pt").write_bytes((folder / "last.pt").read_bytes()[:1000])  # cut short, as by a full disk
    with caplog.at_level("WARNING", logger="vitkit.train"):
        path, state = load_resume_checkpoint(tmp_path / "run")
    assert path == folder / "best.pt" and "optimizer" in state
    assert "last.pt is unreadable" in caplog.text and "best.pt" in caplog.text


@register_objective
@dataclass
class MulticlassHinge(Objective):
    """A custom objective as a user writes one: the multi-class hinge loss, logging the share of margin errors."""

    name: ClassVar[str] = "test_multiclass_hinge"
    margin: float = 1.0

    def loss(self, model, batch):
        x, labels = batch
        logits = model(x).float()  # (B, K)
        margins = (self.margin - logits.gather(1, labels[:, None]) + logits).clamp(min=0)  # (B, K)
        margins = margins.scatter(1, labels[:, None], 0.0)
        return margins.sum(1).mean() / logits.shape[1], {"violations": (margins.sum(1) > 0).float().mean()}


def test_a_custom_objective_is_chosen_by_the_recipe_and_logs_its_numbers(data_root, tmp_path):
    raw = tiny_recipe(data_root, tmp_path / "runs", objective={"name": "test_multiclass_hinge", "margin": 0.5},
                      train={"max_steps": 3, "log_every_steps": 1, "batch_size": 16})  # fmt: skip
    recipe = recipe_from_dict(raw)
    assert recipe.objective == {"name": "test_multiclass_hinge", "margin": 0.5}
    assert "objective:\n  name: test_multiclass_hinge\n  margin: 0.5" in dump_recipe(recipe)
    snapshot = _Snapshot()
    result = _quiet(train_model, recipe, callbacks=[snapshot])
    first = next(r for r in _rows(result.run_dir) if r["kind"] == "step")
    assert first["step"] == 1 and set(first) >= {"loss", "violations", "lr"}
    # Independent check of the first step: torch's multi_margin_loss on the untrained weights and the first batch.
    train_set = build_datasets(recipe).train
    images, labels = next(iter(build_loaders(recipe, train_set)[0]))
    with torch.no_grad():
        logits = snapshot.model((images.float() / 255 - 0.5) / 0.5)
    expected = F.multi_margin_loss(logits, labels, margin=0.5)
    assert first["loss"] == pytest.approx(expected.item(), rel=1e-5)
    share = (F.multi_margin_loss(logits, labels, margin=0.5, reduction="none") > 0).float().mean()
    assert first["violations"] == pytest.approx(share.item())


class _Snapshot(Callback):
    def on_start(self, trainer) -> None:
        self.model = copy.deepcopy(trainer.model)


def test_objective_sections_are_checked():
    assert build_objective(None).name == "classification"
    with pytest.raises(ValueError, match="unknown objective 'nope'.*classification"):
        build_objective({"name": "nope"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['margn'\].*margin"):
        build_objective({"name": "test_multiclass_hinge", "margn": 2})


def test_plain_modules_get_sensible_groups_and_frozen_parameters_stay_out():
    model = SmallCNN()
    model.features[0].weight.requires_grad_(False)  # a frozen stem
    groups = param_groups(model, weight_decay=0.1)
    names = {n for g in groups for n in g["names"]}
    assert "features.0.weight" not in names
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    assert decayed == {"features.4.weight", "fc.weight"}  # biases and batch-norm affine parameters skipped
    opt = build_optimizer(model, OptimConfig(lr=0.1))
    assert sum(len(g["params"]) for g in opt.param_groups) == len(names)
    with pytest.raises(ValueError, match="group_matcher"):
        param_groups(model, 0.1, layer_decay=0.7)


def test_layer_groups_follow_the_models_group_matcher():
    class Tower(SmallCNN):
        def group_matcher(self, coarse=False):  # timm's form: regexes, a list of (regex, suffix) for blocks
            return {"stem": r"^features\.[01]\.", "blocks": [(r"^features\.(\d+)\.", None), (r"^fc_norm", (99999,))]}

    scales = {n: g["lr_scale"] for g in param_groups(Tower(), 0.0, layer_decay=0.5) for n in g["names"]}
    # Layers: stem 0, features.4 (block "4") 1, fc (unmatched: the head) 2 -> scales 0.25, 0.5, 1.
    assert scales["features.0.weight"] == scales["features.1.bias"] == 0.25
    assert scales["features.4.weight"] == 0.5 and scales["fc.weight"] == 1.0
