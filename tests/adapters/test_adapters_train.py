"""The recipe's ``adapter:`` section in a real (tiny) fine-tuning run: the backbone stays frozen, the run reports
its trainable parameters and writes only the adapters, which reload onto the base exactly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from helpers import tiny_config
from train_data import make_image_folder, tiny_recipe
from vitkit import VisionTransformer, load_pretrained, save_pretrained
from vitkit.train import finetune, recipe_from_dict


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data"), train_per_class=8, test_per_class=4)


@pytest.mark.parametrize("method", ["lora", "prompt"])
def test_finetune_with_an_adapter_section(
    data_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, method: str
) -> None:
    base = save_pretrained(VisionTransformer(tiny_config(mlp_dim=64)), tmp_path / "base.safetensors")
    frozen = {k: v.clone() for k, v in load_pretrained(base).state_dict().items() if not k.startswith("head")}
    recipe = recipe_from_dict(
        tiny_recipe(
            data_root,
            tmp_path / "runs",
            adapter={"method": method, "rank": 4, "num_prompts": 2},
            train={"epochs": 1, "eval_every_epochs": 1},
        )  # fmt: skip
    )
    with caplog.at_level(logging.INFO, logger="vitkit.train"):
        result = finetune(base, recipe)
    assert any(f"adapter {method}: trainable parameters:" in r.getMessage() for r in caplog.records)
    run = result.run_dir
    assert (run / "adapters.safetensors").is_file() and not (run / "model.safetensors").exists()
    trained = result.model.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in frozen.items())  # the backbone did not move
    restored = load_pretrained(base, adapters=run / "adapters.safetensors")
    assert restored.cfg.extra["classes"] == result.model.cfg.extra["classes"]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(restored(x), result.model.eval()(x))
    size = (run / "adapters.safetensors").stat().st_size
    assert size < base.stat().st_size / 3
