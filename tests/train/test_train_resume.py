"""Kill a real training process mid-epoch, resume it with ``vitkit train --resume``, and get bit-identical results
to a run that was never interrupted: model, EMA, optimiser state and the logged losses. Augmentation, Mixup, label
smoothing and stochastic depth are on, so every random-number generator and the sampler position must be restored.
The process kills itself with SIGKILL at a fixed step (a callback), so the test does not depend on timing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import torch
import yaml

from train_data import make_image_folder, tiny_recipe
from vitkit.train.state import load_checkpoint


def _command(config, name, *extra):
    return [sys.executable, "-m", "vitkit", "train", "--config", str(config), "--set", f"train.run_name={name}", *extra]


KILLER = """
import os, signal, sys
from vitkit.train import load_recipe, train_model
from vitkit.train.callbacks import Callback

class KillAt(Callback):  # as if the machine died right after this step, steps after the last checkpoint lost
    def on_step(self, trainer, row):
        if trainer.global_step == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)

train_model(load_recipe(sys.argv[1], [f"train.run_name={sys.argv[2]}"]), callbacks=[KillAt()])
"""


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
            "epochs": 3,
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
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    # Checkpoints every 7 steps: the last before step 32 is step 28, 4 steps into epoch 2; steps 29-32 are lost.
    proc = subprocess.run([sys.executable, str(killer), str(config), "killed", "32"], capture_output=True,
                          text=True, env=_env(), timeout=240)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    progress = load_checkpoint(last)["progress"]
    assert (progress["global_step"], progress["epoch"], progress["step_in_epoch"]) == (28, 1, 4)

    resumed = subprocess.run(
        _command(config, "killed", "--resume"), capture_output=True, text=True, env=_env(), timeout=240
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed at step {progress['global_step']}" in resumed.stdout

    a = load_checkpoint(tmp_path / "runs" / "whole" / "checkpoints" / "last.pt")
    b = load_checkpoint(last)
    assert a["progress"]["global_step"] == b["progress"]["global_step"] == 3 * 24
    for part in ("model",):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs"
    for name, tensor in a["ema"]["module"].items():
        assert torch.equal(tensor, b["ema"]["module"][name]), f"ema.{name} differs"
    for key, state in a["optimizer"]["state"].items():
        for field, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][key][field]))
    assert _losses(tmp_path / "runs" / "whole") == _losses(run)  # rows logged after the checkpoint were redone
