"""A run killed with SIGKILL at a random moment after its first checkpoint (mid-step, mid-checkpoint, mid-evaluation,
while exporting) and resumed with ``vitkit train --resume`` ends with weights bit-identical to a run never
interrupted, in bf16 where the CPU has it, with the in-memory cache on: the uninterrupted run decodes the images
and writes the cache, the killed one reads it (the cause of the reported difference: decoding drew from the global
RNG, so the model started from other weights). The moments differ every time; the outcome may not. One kill runs
by default, twenty with --runslow."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from train_data import make_image_folder, tiny_recipe
from vitkit.train.state import load_checkpoint


def _command(config, name, *extra):
    return [sys.executable, "-m", "vitkit", "train", "--config", str(config), "--set", f"train.run_name={name}", *extra]


def _env(cache):
    return {**os.environ, "OMP_NUM_THREADS": "1", "VITKIT_CACHE": str(cache)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """(config, cache folder, the uninterrupted run's folder, its duration after the first checkpoint in s)."""
    tmp = tmp_path_factory.mktemp("random_kill")
    data = make_image_folder(tmp / "images", train_per_class=24, test_per_class=8)
    recipe = tiny_recipe(
        data, tmp / "runs",
        model={"drop_path_rate": 0.1},
        data={"padding": 2, "hflip": 0.5, "mixup_alpha": 0.4, "label_smoothing": 0.1, "cache": True},
        train={"epochs": 5, "batch_size": 8, "precision": "auto", "ema_decay": 0.9, "threads": 1,
               "checkpoint_every_steps": 5, "log_every_steps": 3},
    )  # fmt: skip
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(recipe))
    cache = tmp / "cache"  # empty: the uninterrupted run decodes and fills it
    proc = subprocess.Popen(_command(config, "whole"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=_env(cache))  # fmt: skip
    first = _wait_for(tmp / "runs" / "whole" / "checkpoints" / "last.pt", proc)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()
    assert any(cache.iterdir()), "the run wrote no in-memory cache"
    return config, cache, tmp / "runs" / "whole", time.monotonic() - first


def _wait_for(path, proc, timeout=300.0, log=None):
    start = time.monotonic()
    while not path.exists():
        if proc.poll() is not None or time.monotonic() - start > timeout:
            said = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise AssertionError(f"no checkpoint appeared at {path}\n{said}")
        time.sleep(0.01)
    return time.monotonic()


def _kill_resume_compare(uninterrupted, name, seed):
    config, cache, whole, span = uninterrupted
    run = whole.parent / name
    log = whole.parent / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_command(config, name), stdout=out, stderr=subprocess.STDOUT, env=_env(cache))
    _wait_for(run / "checkpoints" / "last.pt", proc, log=log)
    delay = random.Random(seed).uniform(0.0, span)
    time.sleep(delay)
    proc.kill()  # SIGKILL: nothing after this moment reaches the disk
    proc.wait()
    resumed = subprocess.run(_command(config, name, "--resume"), capture_output=True, text=True, env=_env(cache),
                             timeout=300)  # fmt: skip
    where = f"(seed {seed}: killed {delay:.2f} s after the first checkpoint)"
    assert resumed.returncode == 0, f"{where}\n{resumed.stdout}{resumed.stderr}"
    a, b = load_checkpoint(whole / "checkpoints" / "last.pt"), load_checkpoint(run / "checkpoints" / "last.pt")
    differ = [k for k, v in a["model"].items() if not torch.equal(v, b["model"][k])]
    differ += [f"ema.{k}" for k, v in a["ema"]["module"].items() if not torch.equal(v, b["ema"]["module"][k])]
    assert not differ, f"{where}: {len(differ)} tensors differ, e.g. {differ[:3]}"
    final_a, final_b = load_file(whole / "model.safetensors"), load_file(run / "model.safetensors")
    assert all(torch.equal(v, final_b[k]) for k, v in final_a.items()), f"{where}: model.safetensors differs"
    rows = [[json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()] for r in (whole, run)]
    untimed = [[{k: v for k, v in r.items() if k not in ("wall_time", "img_per_s", "epoch_time")} for r in rs]
               for rs in rows]  # fmt: skip
    assert untimed[0] == untimed[1], f"{where}: the logged numbers differ"


def test_killed_at_a_random_moment_resumes_bit_identical(uninterrupted):
    _kill_resume_compare(uninterrupted, "killed", seed=int(time.time()))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
def test_twenty_random_kills_resume_bit_identical(uninterrupted, seed):
    _kill_resume_compare(uninterrupted, f"killed_{seed}", seed)
