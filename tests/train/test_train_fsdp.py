"""Sharded training (FSDP: torch's ``fully_shard``, one unit per block) under torchrun with 2 CPU (gloo) processes:
the weights equal one process's over the same global batch within float32 tolerance, and its checkpoint (whole
tensors, gathered on rank 0) loads in one process and resumes there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from train_data import make_image_folder, tiny_recipe
from vitkit.train.state import load_checkpoint
from vitkit.weights.load import load_pretrained

WORKER = """
import json, os, shutil, sys, torch
from vitkit.train import recipe_from_dict, train_model
from vitkit.train.callbacks import Callback

class KeepStep6(Callback):  # a copy of the mid-epoch checkpoint at step 6, to resume from later
    def on_checkpoint(self, trainer, name, path):
        if path is not None and trainer.global_step == 6:
            shutil.copy(path, os.path.join(sys.argv[3], "step6.pt"))

recipe = recipe_from_dict(json.load(open(sys.argv[1])))
resume = sys.argv[4] if len(sys.argv) > 4 else False
result = train_model(recipe, run_dir=sys.argv[2], resume=resume, callbacks=[KeepStep6()])
if os.environ.get("RANK", "0") == "0":
    torch.save({"eval": result.final_eval.summary()}, f"{sys.argv[3]}/result.pt")
"""


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _recipe(tmp_path):
    data = make_image_folder(tmp_path / "images", train_per_class=16, test_per_class=8)  # 32 test images: 16 a rank
    # 64 images / batch 16: 4 steps an epoch; 10 steps with a checkpoint at step 6 (mid-epoch 2).
    return tiny_recipe(
        data, tmp_path / "runs", optim={"name": "sgd", "lr": 0.1, "momentum": 0.9},
        train={"epochs": 3, "max_steps": 10, "batch_size": 16, "threads": 1, "log_every_steps": 2, "parallel": "fsdp",
               "eval_batch_size": 8, "checkpoint_every_steps": 6},
    )  # fmt: skip


def _run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_fsdp_matches_one_process_and_its_checkpoint_resumes_in_one(tmp_path):
    recipe_path, worker = tmp_path / "recipe.json", tmp_path / "worker.py"
    recipe_path.write_text(json.dumps(_recipe(tmp_path)))
    worker.write_text(WORKER)
    for name in ("fsdp", "one"):
        (tmp_path / name).mkdir()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run([*torchrun, str(worker), str(recipe_path), str(tmp_path / "runs" / "fsdp"), str(tmp_path / "fsdp")])
    _run([sys.executable, str(worker), str(recipe_path), str(tmp_path / "runs" / "one"), str(tmp_path / "one")])

    sharded = load_checkpoint(tmp_path / "runs" / "fsdp" / "checkpoints" / "last.pt")
    single = load_checkpoint(tmp_path / "runs" / "one" / "checkpoints" / "last.pt")
    assert sharded["progress"]["global_step"] == single["progress"]["global_step"] == 10
    assert sharded["model"].keys() == single["model"].keys()
    for name, tensor in single["model"].items():  # whole tensors, not shards
        torch.testing.assert_close(sharded["model"][name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    a, b = (torch.load(tmp_path / n / "result.pt", weights_only=True)["eval"] for n in ("fsdp", "one"))
    assert a["num_samples"] == b["num_samples"] == 32 and abs(a["loss"] - b["loss"]) < 1e-4

    model = load_pretrained(tmp_path / "fsdp" / "step6.pt")  # the sharded run's checkpoint loads in one process
    assert model.state_dict().keys() == single["model"].keys()
    # ... and resumes there: steps 7-10 in one process end where the sharded run and the one-process run ended.
    (tmp_path / "resumed").mkdir()
    _run([sys.executable, str(worker), str(recipe_path), str(tmp_path / "runs" / "resumed"), str(tmp_path / "resumed"),
          str(tmp_path / "fsdp" / "step6.pt")])  # fmt: skip
    resumed = load_checkpoint(tmp_path / "runs" / "resumed" / "checkpoints" / "last.pt")
    assert resumed["progress"]["global_step"] == 10
    for name, tensor in single["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, atol=1e-5, rtol=1e-4, msg=name)
