"""Measurements a study's plan and table need: a timing probe of one optimiser step, forward FLOPs, parameters,
and the wall time per step a finished run logged."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitkit.train.recipe import Recipe
from vitkit.train.runlog import read_metrics

# What the probe leaves out, measured on the project's 2-core Xeon: a forward pass costs about 0.4 of a training step
# per image; each run spends a few seconds loading the decoded data, building the model and writing its files; two
# single-threaded runs side by side each step about 10% slower than one alone.
FORWARD_SHARE = 0.42
RUN_OVERHEAD_S = 4.0
EPOCH_END_S = 0.03  # a checkpoint written and a metrics row logged at every epoch end
PARALLEL_SLOWDOWN = 1.1  # per CPU job when several share the machine


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def forward_mflops(model: nn.Module, img_size: tuple[int, int] = (32, 32)) -> float | None:
    """Forward MFLOPs for one image (a multiply-add counts 2), from PyTorch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, *img_size, device=param.device, dtype=param.dtype))
        return counter.get_total_flops() / 1e6
    except Exception:  # noqa: BLE001 - an op the counter cannot trace only loses a table column
        return None
    finally:
        model.train(was_training)


def probe_seconds_per_step(
    recipe: Recipe, info: Mapping[str, Any], device: str = "cpu", threads: int | None = None, steps: int = 3
) -> float:
    """Seconds one optimiser step of ``recipe``'s model takes here (random inputs at the recipe's batch size, after
    two warm-up steps): forward, backward and the AdamW update in the recipe's precision and attention kernel, as
    the engine runs them, without data loading or evaluation."""
    from vitkit.train.optim import build_optimizer
    from vitkit.train.parallel import attention_backend
    from vitkit.train.run import build_model
    from vitkit.utils.device import autocast_for, resolve_precision

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            model = build_model(recipe, dict(info)).to(device).train()
            optimizer = build_optimizer(model, recipe.optim)
            size = recipe.data.img_size
            x = torch.randn(recipe.train.batch_size, 3, *size, device=device)
            y = torch.randint(0, max(len(info.get("classes") or ()), 1), (recipe.train.batch_size,), device=device)
            dev = torch.device(device)
            precision = resolve_precision(recipe.train.precision, dev)
            times = []
            for i in range(2 + steps):
                start = time.perf_counter()
                with autocast_for(precision, dev), attention_backend(recipe.train.sdpa_backend)():
                    loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if torch.device(device).type == "cuda":
                    torch.cuda.synchronize(device)
                if i >= 2:
                    times.append(time.perf_counter() - start)
        return statistics.median(times)
    finally:
        torch.set_num_threads(before)


def logged_ms_per_step(run_dir: Path, batch_size: int) -> float | None:
    """Median wall milliseconds per optimiser step over a run's logged windows (its ``metrics.jsonl``), the first
    window (warm-up) left out; epoch ends inside a window count too."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return None
    rates = [r["img_per_s"] for r in read_metrics(path) if r.get("kind") == "step" and r.get("img_per_s")]
    rates = rates[1:] or rates
    return 1000 * batch_size / statistics.median(rates) if rates else None


def final_numbers(run_dir: Path) -> tuple[dict[str, float], float]:
    """(the last evaluation's numbers, the run's wall seconds) from its ``metrics.jsonl``."""
    rows = [r for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r.get("kind") == "epoch"]
    evaluated = [r for r in rows if r.get("top1") is not None]
    numbers = {
        k: float(v) for k, v in (evaluated[-1] if evaluated else {}).items() if k in ("top1", "top5", "eval_loss")
    }
    return numbers, float(rows[-1]["wall_time"]) if rows else 0.0
