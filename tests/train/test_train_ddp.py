"""Data-parallel training under torchrun with 2 CPU (gloo) processes: both ranks end with identical weights, equal
within float tolerance to one process over the same global batch, and only rank 0 writes the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import yaml

from train_data import make_image_folder, tiny_recipe

WORKER = """
import json, os, sys, torch
from vitkit.train import recipe_from_dict, train_model
recipe = recipe_from_dict(json.load(open(sys.argv[1])))
result = train_model(recipe, run_dir=sys.argv[2])
rank = os.environ.get("RANK", "0")
torch.save({"model": result.model.state_dict(), "eval": result.final_eval.summary()}, f"{sys.argv[3]}/rank{rank}.pt")
"""


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(*args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def _recipe(tmp_path):
    data = make_image_folder(tmp_path / "images", train_per_class=16, test_per_class=9)  # 36 test images: 18 a rank
    # SGD: Adam divides by sqrt(v), so a gradient that is zero up to rounding (the key bias: softmax ignores a
    # shift shared by all keys) would turn summation-order noise into full-size, run-dependent updates.
    return tiny_recipe(
        data,
        tmp_path / "runs",
        optim={"name": "sgd", "lr": 0.1, "momentum": 0.9},
        train={"max_steps": 6, "batch_size": 16, "threads": 1, "log_every_steps": 2},
    )


def test_two_gloo_processes_match_one_process_over_the_same_global_batch(tmp_path):
    recipe_path = tmp_path / "recipe.json"
    recipe_path.write_text(json.dumps(_recipe(tmp_path)))
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    (tmp_path / "ddp").mkdir()
    (tmp_path / "one").mkdir()
    ddp = subprocess.run(
        _torchrun(str(worker), str(recipe_path), str(tmp_path / "runs" / "ddp"), str(tmp_path / "ddp")),
        capture_output=True, text=True, env=_env(), timeout=240,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    one = subprocess.run(
        [sys.executable, str(worker), str(recipe_path), str(tmp_path / "runs" / "one"), str(tmp_path / "one")],
        capture_output=True, text=True, env=_env(), timeout=240,
    )  # fmt: skip
    assert one.returncode == 0, one.stdout + one.stderr

    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    single = torch.load(tmp_path / "one" / "rank0.pt", weights_only=True)
    for name, tensor in rank0["model"].items():
        assert torch.equal(tensor, rank1["model"][name]), f"ranks disagree on {name}"
        torch.testing.assert_close(tensor, single["model"][name], atol=1e-5, rtol=1e-4, msg=name)
    # Sharded evaluation sums to the single-process result over the whole test split, each image once.
    assert rank0["eval"] == rank1["eval"]
    assert rank0["eval"]["num_samples"] == single["eval"]["num_samples"] == 36
    assert abs(rank0["eval"]["loss"] - single["eval"]["loss"]) < 1e-4


def test_torchrun_module_entry_point_logs_and_checkpoints_on_rank_zero_only(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(_recipe(tmp_path)))
    result = subprocess.run(
        _torchrun("-m", "vitkit", "train", "--config", str(config)),
        capture_output=True, text=True, env=_env(), timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("x 2 processes") == 1  # one start line: rank 0 prints, rank 1 is silent
    run = tmp_path / "runs" / "tiny"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.pt").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # 64 images / batch 16 = 4 steps an epoch, 6 steps: every row written once, by one process.
    assert [r["step"] for r in rows if r["kind"] == "step"] == [2, 4, 6]
    assert [r["step"] for r in rows if r["kind"] == "epoch"] == [4, 6]
