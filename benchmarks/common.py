"""Timing helpers for the benchmarks: interleaved repeats and the machine's own matmul rate as a yardstick.

The machine is shared and noisy, so every figure is a median over repeats taken in alternation with its peer,
and speeds are reported as ratios measured side by side.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU's model name (every figure states the machine it was measured on)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], device: str = "cpu") -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


Calls = dict[str, Callable[[], object]]


def interleaved_times(fns: Calls, repeats: int, device: str = "cpu") -> dict[str, list[float]]:
    """Seconds of each call of each function, running them in turn so that load changes hit all alike."""
    for fn in fns.values():  # warm-up: allocator, kernel selection, lazy init
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(time_call(fn, device))
    return times


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, device: str = "cpu") -> dict[str, float]:
    """Median seconds per call of each function, timed in alternation (see :func:`interleaved_times`)."""
    return {name: statistics.median(ts) for name, ts in interleaved_times(fns, repeats, device).items()}


def interleaved_best(fns: dict[str, Callable[[], object]], repeats: int, device: str = "cpu") -> dict[str, float]:
    """Fastest seconds per call of each function, timed in alternation: on a shared machine the best of several
    repeats is the run least disturbed by other jobs, so ratios of bests are the steadiest comparison."""
    return {name: min(ts) for name, ts in interleaved_times(fns, repeats, device).items()}


def matmul_flops(dtype: torch.dtype, device: str = "cpu", n: int = 2048, repeats: int = 5) -> float:
    """This machine's dense n^3 matmul rate in FLOP/s for ``dtype``: the ceiling a ViT can approach."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    seconds = interleaved_medians({"mm": lambda: a @ b}, repeats, device)["mm"]
    return 2 * n**3 / seconds


def vit_flops(cfg, batch: int) -> float:
    """Forward FLOPs (2 per multiply-add) of the matmuls and attention: patch projection, qkv, proj, MLP, QK^T, AV."""
    D, L, M = cfg.embed_dim, cfg.depth, cfg.mlp_dim
    n = cfg.grid_size[0] * cfg.grid_size[1]
    T = n + cfg.num_prefix_tokens
    patch = 2 * n * cfg.in_chans * cfg.patch_size[0] * cfg.patch_size[1] * D
    per_layer = 2 * T * (4 * D * D + 2 * D * M) + 4 * T * T * D
    return batch * (patch + L * per_layer + 2 * D * cfg.num_classes)


def print_profile(title: str, fn: Callable[[], object], calls: int = 3, rows: int = 12) -> None:
    """torch.profiler's top ops by self CPU time over ``calls`` calls of ``fn`` (after one warm-up call)."""
    from torch.profiler import profile

    fn()
    with profile() as prof:
        for _ in range(calls):
            fn()
    print(f"\n{title} x {calls}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
