"""Kill a real ``vitkit train`` process mid-epoch, resume it, and get bit-identical results to a run that was
never interrupted: model, EMA, optimiser state and the logged losses. Augmentation, Mixup, label smoothing and
stochastic depth are on, so every random-number generator and the sampler position must be restored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from train_data import make_image_folder, tiny_recipe
from vitkit.train.state import load_checkpoint


def _command(config, name, *extra):
    return [sys.executable, "-m", "vitkit", "train", "--config", str(config), "--set", f"train.run_name={name}", *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["kind"], r["step"], r.get("loss"), r.get("train_loss"), r.get("top1")) for r in rows]


def test_killed_and_resumed_run_ends_bit_identical(tmp_path):
    data = make_image_folder(tmp_path / "images")
    recipe = tiny_recipe(
        data,
        tmp_path / "runs",
        model={"drop_path_rate": 0.1},
        data={"padding": 2, "hflip": 0.5, "mixup_alpha": 0.4, "label_smoothing": 0.1},
        train={
            "epochs": 8,
            "batch_size": 8,  # 24 steps per epoch
            "precision": "bf16",
            "ema_decay": 0.9,
            "threads": 1,
            "checkpoint_every_steps": 7,  # mid-epoch checkpoints
            "log_every_steps": 4,
        },
    )
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(recipe))
    whole = subprocess.run(_command(config, "whole"), capture_output=True, text=True, env=_env(), timeout=240)
    assert whole.returncode == 0, whole.stdout + whole.stderr

    run = tmp_path / "runs" / "killed"
    last = run / "checkpoints" / "last.pt"
    proc = subprocess.Popen(_command(config, "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    progress = load_checkpoint(last)["progress"]
    assert 0 < progress["global_step"] < 8 * 24
    if progress["step_in_epoch"] == 0:
        pytest.fail(f"killed at an epoch boundary (step {progress['global_step']}); the test wants mid-epoch")

    resumed = subprocess.run(
        _command(config, "killed", "--resume"), capture_output=True, text=True, env=_env(), timeout=240
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed at step {progress['global_step']}" in resumed.stdout

    a = load_checkpoint(tmp_path / "runs" / "whole" / "checkpoints" / "last.pt")
    b = load_checkpoint(last)
    assert a["progress"]["global_step"] == b["progress"]["global_step"] == 8 * 24
    for part in ("model",):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs"
    for name, tensor in a["ema"]["module"].items():
        assert torch.equal(tensor, b["ema"]["module"][name]), f"ema.{name} differs"
    for key, state in a["optimizer"]["state"].items():
        for field, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][key][field]))
    assert _losses(tmp_path / "runs" / "whole") == _losses(run)  # rows logged after the checkpoint were redone
