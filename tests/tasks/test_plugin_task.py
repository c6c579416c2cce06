"""A task from outside vitkit, registered here and nowhere else, trains and evaluates through the command line: a
toy regression (each image's mean brightness) with its own objective, report and model family. If the engine, the
run composer or ``vitkit eval`` needed a line of vitkit's source to know this task, this file would fail."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import vitkit
from train_data import make_image_folder, tiny_recipe
from vitkit.cli.main import main
from vitkit.config import ViTConfig
from vitkit.data.augment import normalize
from vitkit.data.config import DataConfig
from vitkit.data.datasets import build_dataset
from vitkit.families import Family, register_family, unregister_family
from vitkit.models.vit import VisionTransformer
from vitkit.tasks import _REGISTRY as TASKS
from vitkit.tasks import EvalContext, Task, get_task, register_task, task_of
from vitkit.train.objectives.base import _REGISTRY as OBJECTIVES
from vitkit.train.objectives.base import Objective, register_objective


def brightness(images: torch.Tensor) -> torch.Tensor:
    """The target: mean pixel value in [0, 1] of each uint8 image (B, C, H, W)."""
    return images.float().mean(dim=(1, 2, 3)) / 255.0


@dataclasses.dataclass(frozen=True)
class BrightnessConfig(ViTConfig):
    family: ClassVar[str] = "toy_brightness"


@register_objective
@dataclasses.dataclass
class BrightnessMSE(Objective):
    name: ClassVar[str] = "brightness_mse"

    def loss(self, model: Callable[..., Any], batch: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
        x, target = batch
        return nn.functional.mse_loss(model(x).squeeze(-1).float(), target), {}


@dataclasses.dataclass
class BrightnessReport:
    mae: float
    count: int

    def numbers(self) -> dict[str, float]:
        return {"mae": self.mae}

    def summary(self) -> dict[str, Any]:
        return {"mae": self.mae}

    def to_dict(self) -> dict[str, Any]:
        return {"mae": self.mae, "num_samples": self.count}

    def brief(self) -> dict[str, Any]:
        return self.to_dict()

    def format(self) -> str:
        return f"brightness MAE {self.mae:.4f} over {self.count} images"


class Brightness(Task):
    name = "toy_brightness"
    objectives = ("brightness_mse",)
    best_metric = "mae"
    higher_is_better = False

    def data_config_class(self) -> type:
        return DataConfig

    def dataset(self, data_cfg: DataConfig, split: str, augment: bool) -> Any:
        return build_dataset(data_cfg, split, augment=augment)

    def model_overrides(self, info: Mapping[str, Any]) -> dict[str, Any]:
        return {"num_classes": 1}

    def batch_transform(self, data_cfg: DataConfig, info: Mapping[str, Any], train: bool) -> Callable:
        return lambda images, labels: (normalize(images, data_cfg.mean, data_cfg.std), brightness(images))

    def evaluate(self, model: nn.Module, loader: Iterable, ctx: EvalContext, objective: Any = None) -> Any:
        errors = []
        with torch.no_grad():
            for images, labels in loader:
                x, target = ctx.transform(images.to(ctx.device), labels)
                errors.append((model(x).squeeze(-1).float() - target).abs())
        err = torch.cat(errors)
        return BrightnessReport(float(err.mean()), len(err))


TASK = Brightness()
FAMILY = Family(
    "toy_brightness", BrightnessConfig, VisionTransformer, task="toy_brightness", block_pattern=r"blocks\.\d+"
)
TINY = BrightnessConfig(img_size=(16, 16), patch_size=4, embed_dim=32, depth=2, num_heads=4, mlp_dim=64, num_classes=1)


@pytest.fixture(autouse=True, scope="module")
def registered():
    """The task and its family exist while this file's tests run, as a user's plug-in would after its import."""
    register_task(TASK)
    register_family(FAMILY, models={"toy_brightness_tiny": TINY})
    yield
    unregister_family("toy_brightness")
    TASKS.unregister("toy_brightness")
    OBJECTIVES.pop("brightness_mse", None)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("bright_data"), train_per_class=16, test_per_class=4)


def test_the_family_names_the_task():
    assert task_of(vitkit.create_model("toy_brightness_tiny")) is get_task("toy_brightness") is TASK


def test_train_and_eval_through_the_command_line(folder, tmp_path, capsys):
    recipe = tiny_recipe(folder, tmp_path / "runs", train={"epochs": 2, "batch_size": 16})
    recipe["model"] = {"name": "toy_brightness_tiny"}
    path = tmp_path / "bright.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML; the objective is the task's default
    assert main(["train", "--config", str(path)]) == 0
    final = capsys.readouterr().out.splitlines()[0]
    assert final.startswith("final: mae 0.") and "%" not in final, "a number the task calls no fraction stays one"
    run = tmp_path / "runs" / "tiny"
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("mae" in row for row in logged if row["kind"] == "epoch"), "the engine logs the task's own numbers"
    model = vitkit.load_pretrained(run / "model.safetensors").eval()
    assert isinstance(model.cfg, BrightnessConfig) and model.cfg.num_classes == 1

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "model.safetensors"), "--data", str(folder), "--json",
                 "--workers", "0"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    # The reference: every test image decoded with PIL, normalised by hand, scored by the loaded model.
    paths = sorted((folder / "test").rglob("*.png"))
    pixels = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])).permute(0, 3, 1, 2)
    mean, std = torch.tensor(model.cfg.mean).view(1, 3, 1, 1), torch.tensor(model.cfg.std).view(1, 3, 1, 1)
    with torch.no_grad():
        predicted = model((pixels.float() / 255 - mean) / std).squeeze(-1)
    expected = (predicted - pixels.float().mean(dim=(1, 2, 3)) / 255).abs().mean().item()
    assert report["num_samples"] == len(paths) == 16
    assert report["mae"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
