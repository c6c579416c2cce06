"""The shipped cifar10_vit recipe end to end on the real CIFAR-10 (slow: minutes; needs the data set locally):
train briefly, then evaluate, predict and fine-tune at 64 px from its checkpoint. The fast, always-run version of
this chain is tests/test_eval_cli.py on a tiny image folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paths import REPO
from vitkit.data import data_roots

ROOT = REPO


def _cifar() -> Path | None:
    for root in data_roots():
        if (root / "cifar10" / "test").is_dir():
            return root / "cifar10"
    return None


def _vitkit(*args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vitkit", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT)


@pytest.mark.slow
def test_cifar10_recipe_trains_and_its_checkpoint_evaluates_predicts_and_finetunes(tmp_path):
    cifar = _cifar()
    if cifar is None:
        pytest.skip("CIFAR-10 not found locally (see docs/data.md)")
    out = ["--set", f"train.output_dir={tmp_path}"]
    train = _vitkit("train", "--config", ROOT / "recipes" / "cifar10_vit.yaml", *out, "--set", "train.max_minutes=2")
    assert train.returncode == 0, train.stdout + train.stderr
    run = tmp_path / "cifar10_vit"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert epochs[-1]["top1"] > 0.12  # above chance (the time budget's accounting is tested with a fake clock)
    model = run / "model.safetensors"
    ev = _vitkit("eval", "--checkpoint", model, "--data", "cifar10", "--json", "--limit", "1000")
    assert ev.returncode == 0 and json.loads(ev.stdout)["num_samples"] == 1000
    image = next((cifar / "test" / "cat").iterdir())
    pred = _vitkit("predict", image, "--checkpoint", model, "--json")
    assert pred.returncode == 0 and len(json.loads(pred.stdout)[0]["top"]) == 5
    ft = _vitkit(
        "finetune", "--config", ROOT / "recipes" / "finetune_cifar10_64.yaml", "--checkpoint", model, *out,
        "--set", "train.max_steps=10", "--set", "train.eval_subset=500", "--set", "schedule.warmup_steps=2",
    )  # fmt: skip
    assert ft.returncode == 0, ft.stdout + ft.stderr
    ft_rows = [
        json.loads(line) for line in (tmp_path / "finetune_cifar10_64" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in ft_rows if r["kind"] == "epoch"] == [0, 1]
