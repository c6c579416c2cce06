"""B/16 at 224 px on one GPU: vitkit's fast paths next to timm, inference and training, in one process.

    python benchmarks/gpu_fastpath.py --out OUT [--batch 256] [--budget 400]

Inference (bf16): timm eager under autocast, timm compiled (autocast; and with bf16 weights), vitkit eager
(autocast) and ``vitkit.optimize(model, "bf16")`` (bf16 weights, torch.compile, flash attention).
Training (bf16 autocast, AdamW, cross-entropy on random labels): timm eager and compiled with fused AdamW, vitkit
eager, vitkit's training fast path (compiled, fused AdamW, flash attention) and, when torchao imports, the
same with float8 matmuls (torchao, FLOAT8 recipe). Each row gives images/s, the ratio to its timm peer and the
model FLOP utilisation (3x forward FLOPs per trained image) against the chip's dense bf16 peak and a measured
8192^3 matmul rate. Stages that would outrun ``--budget`` seconds are skipped and say so.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_best, sync, vit_flops  # noqa: E402
from timm_peer import timm_model  # noqa: E402

import vitkit  # noqa: E402

# Dense bf16 tensor-core peaks (NVIDIA datasheets, SXM parts, without sparsity).
PEAKS = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}
NAME = "vit_base_patch16_224"
FLOAT8 = "tensorwise"  # torchao recipe: tensorwise (one scale per tensor) or rowwise
DEVICE = "cuda"  # --device cpu (with a small --model) is a dry run of the script itself


def device_name() -> str:
    return torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (dry run)"


def chip_peak() -> float | None:
    name = device_name()
    return next((v for k, v in PEAKS.items() if k in name), None)


def measured_matmul(n: int) -> float:
    a = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    return 2 * n**3 / interleaved_best({"mm": lambda: a @ b}, 10, DEVICE)["mm"]


class Clock:
    """Wall-clock budget: stages check it before starting, so the script ends inside its limit."""

    def __init__(self, budget: float) -> None:
        self.start, self.budget = time.perf_counter(), budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)


def warm(name: str, fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    sync(DEVICE)
    seconds = time.perf_counter() - t0
    print(f"  {name}: first call (compile) {seconds:.1f} s", flush=True)
    return seconds


def inference(batch: int, repeats: int, clock: Clock, extra: bool) -> dict[str, float]:
    torch.manual_seed(0)
    peer = timm_model(NAME).to(DEVICE).eval()
    ours = vitkit.create_model(NAME).to(DEVICE).eval()
    ours.load_state_dict(peer.state_dict())
    x = torch.randn(batch, 3, 224, 224, device=DEVICE)

    def autocast_call(m):
        def call():
            with torch.no_grad(), torch.autocast(DEVICE, dtype=torch.bfloat16):
                return m(x)

        return call

    def plain_call(m, dtype):
        def call():
            with torch.no_grad():
                return m(x.to(dtype))

        return call

    fns = {"timm eager (autocast)": autocast_call(peer), "vitkit eager (autocast)": autocast_call(ours)}
    peer_c = torch.compile(peer)
    fns["timm compiled (autocast)"] = autocast_call(peer_c)
    warm("timm compiled (autocast)", fns["timm compiled (autocast)"])
    if extra:
        peer_bf16 = torch.compile(copy.deepcopy(peer).to(torch.bfloat16))
        fns["timm compiled (bf16 weights)"] = plain_call(peer_bf16, torch.bfloat16)
        warm("timm compiled (bf16 weights)", fns["timm compiled (bf16 weights)"])
    t0 = time.perf_counter()
    fast = vitkit.optimize(ours, "bf16", compile=True)
    print(f"  vitkit.optimize bf16: {time.perf_counter() - t0:.1f} s (compiled={fast.compiled})", flush=True)
    fns["vitkit.optimize bf16 (compiled)"] = lambda: fast(x)
    if extra and clock.left() > 300:
        try:
            int8 = vitkit.optimize(ours, "int8", compile=True, calibration=x[:32])
            fns["vitkit.optimize int8 (torchao dynamic, compiled)"] = lambda: int8(x)
        except Exception as exc:  # torchao absent on the device, or unsupported
            print(f"  int8: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})", flush=True)
    secs = interleaved_best(fns, repeats, DEVICE)
    return {k: batch / s for k, s in secs.items()}


def train_step(model, optimizer, x, y, compiled: bool):
    forward = torch.compile(model) if compiled else model

    def step():
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def float8_model(model):
    """Float8 matmuls (torchao, FLOAT8 recipe) in every Linear whose sizes suit the fp8 GEMM (multiples of 16)."""
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    def suits(module, fqn: str) -> bool:
        return isinstance(module, torch.nn.Linear) and module.in_features % 16 == 0 and module.out_features % 16 == 0

    cfg = Float8LinearConfig.from_recipe_name(FLOAT8)
    return convert_to_float8_training(model, config=cfg, module_filter_fn=suits)


def training(batch: int, repeats: int, steps: int, clock: Clock) -> dict[str, float]:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 224, 224, device=DEVICE)
    y = torch.randint(0, 1000, (batch,), device=DEVICE)
    variants: dict[str, Callable[[], object]] = {}

    def add(name: str, model, compiled: bool) -> None:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=True)
        step = train_step(model, opt, x, y, compiled)

        def run() -> None:
            for _ in range(steps):
                step()

        if compiled:
            warm(name, step)
        variants[name] = run

    add("timm eager", timm_model(NAME).to(DEVICE).train(), False)
    add("vitkit eager", vitkit.create_model(NAME).to(DEVICE).train(), False)
    add("timm compiled", timm_model(NAME).to(DEVICE).train(), True)
    add("vitkit fast path (compiled, fused AdamW, flash SDPA)", vitkit.create_model(NAME).to(DEVICE).train(), True)
    if clock.left() > 100:
        try:
            add(f"vitkit fast path + float8 {FLOAT8}", float8_model(vitkit.create_model(NAME).to(DEVICE).train()), True)
        except Exception as exc:
            print(f"  float8: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})", flush=True)
    else:
        print("  float8: skipped (time budget)", flush=True)
    secs = interleaved_best(variants, repeats, DEVICE)
    return {k: batch * steps / s for k, s in secs.items()}


def table(title: str, rates: dict[str, float], peer_of: Callable[[str], str], flops: float, peaks) -> list[str]:
    chip, measured = peaks
    lines = [f"### {title}", "", "| variant | img/s | vs peer | peer | MFU (chip peak) | vs 8192^3 matmul |"]
    lines.append("|---|---:|---:|---|---:|---:|")
    for name, ips in rates.items():
        peer = peer_of(name)
        ratio = ips / rates[peer] if peer in rates else float("nan")
        mfu = f"{ips * flops / chip:.1%}" if chip else "-"
        lines.append(f"| {name} | {ips:,.0f} | {ratio:.2f} | {peer} | {mfu} | {ips * flops / measured:.1%} |")
    return lines + [""]


def main() -> None:
    global NAME, DEVICE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default=NAME)
    parser.add_argument("--device", default=DEVICE)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed repeat")
    parser.add_argument("--extra", action="store_true", help="also timm compiled with bf16 weights, and int8")
    parser.add_argument("--budget", type=float, default=400.0, help="seconds; later stages are skipped past it")
    args = parser.parse_args()
    NAME, DEVICE = args.model, args.device
    clock = Clock(args.budget)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = vitkit.get_config(NAME)
    fwd = vit_flops(cfg, 1)
    peaks = (chip_peak(), measured_matmul(8192 if DEVICE == "cuda" else 1024))
    head = f"{device_name()}, torch {torch.__version__}, batch {args.batch}, bf16, {NAME}"
    print(f"# {head}; 8192^3 bf16 matmul {peaks[1] / 1e12:.0f} TFLOP/s", flush=True)
    lines = [f"# GPU fast path: {head}", f"8192^3 bf16 matmul measured: {peaks[1] / 1e12:.0f} TFLOP/s", ""]
    results: dict[str, dict[str, float]] = {}
    print("inference", flush=True)
    results["inference"] = inference(args.batch, args.repeats, clock, args.extra)
    peer = lambda n: "timm eager (autocast)" if "eager" in n else "timm compiled (autocast)"
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    lines += table("Inference", results["inference"], peer, fwd, peaks)
    print("\n".join(lines), flush=True)
    if clock.left() > 120:
        print("training", flush=True)
        results["training"] = training(args.batch, args.repeats, args.steps, clock)
        peer = lambda n: "timm eager" if "eager" in n else "timm compiled"
        lines += table("Training (one step = forward + backward + AdamW)", results["training"], peer, 3 * fwd, peaks)
    else:
        lines.append("training: skipped (time budget)")
    text = "\n".join(lines)
    print(text, flush=True)
    (out / "gpu_table.md").write_text(text + "\n")
    (out / "gpu_results.json").write_text(json.dumps({"device": head, "results": results}, indent=1))
    print(f"done in {time.perf_counter() - clock.start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
