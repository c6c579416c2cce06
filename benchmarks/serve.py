"""Load test of ``vitkit serve`` on this machine: concurrent clients over loopback, dynamic batching on and off.

    python benchmarks/serve.py                               # 16 clients, 60 s per mode, vit_tiny_patch4_32
    python benchmarks/serve.py --checkpoint run/model.safetensors --duration 20

For each mode a fresh server process starts on a free 127.0.0.1 port; ``--clients`` threads, each with its own
keep-alive connection, post CIFAR-10 test images (or generated ones) as raw bodies for ``--duration`` seconds
(and at most ``--max-requests`` in all). Prints requests, errors, throughput, p50/p99 latency and the mean batch
the server formed (from its /metrics), then the batching-on/off throughput ratio. The clients share the CPU
with the server, as real local clients would.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CIFAR_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "test"
MODES = {"batching on": ("--max-batch", "16", "--max-wait-ms", "5"), "batching off": ("--max-batch", "1")}


def test_images(count: int = 64) -> list[bytes]:
    """CIFAR-10 test JPEGs spread over the classes, or seeded random JPEGs of the same size without the data."""
    files = sorted(CIFAR_TEST.glob("*/*.jpg"))
    if files:
        return [files[i * len(files) // count].read_bytes() for i in range(count)]
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
        out.append(buf.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: Path, args: tuple[str, ...], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "vitkit", "serve", str(checkpoint), "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen([*cmd, *args], stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not start within 120 s")


def client(port: int, images: list[bytes], stop_at: float, budget: list[int], lock, out: list, offset: int) -> None:
    """Post images in turn until ``stop_at`` or the shared request budget is spent; (latency, status) into ``out``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = offset
    while time.monotonic() < stop_at:
        with lock:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        body = images[i % len(images)]
        i += 1
        start = time.perf_counter()
        try:
            conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/octet-stream"})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            status = 0
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        out.append((time.perf_counter() - start, status))
    conn.close()


def batch_totals(port: int) -> np.ndarray:
    """(images, forward passes) the server has run so far, from its /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    samples = dict(line.rsplit(" ", 1) for line in conn.getresponse().read().decode().splitlines() if line[:1] != "#")
    return np.array([float(samples.get("vitkit_batch_size_sum", 0)), float(samples.get("vitkit_batch_size_count", 0))])


def run_mode(name: str, checkpoint: Path, args: tuple[str, ...], opts, images: list[bytes], log: Path) -> dict:
    proc, port = start_server(checkpoint, args, log)
    try:
        warm: list = []
        client(port, images, time.monotonic() + 2, [32], threading.Lock(), warm, 0)  # first-request costs
        before = batch_totals(port)
        results: list = []
        lock, budget = threading.Lock(), [opts.max_requests]
        stop_at = time.monotonic() + opts.duration
        threads = [
            threading.Thread(target=client, args=(port, images, stop_at, budget, lock, results, 7 * k))
            for k in range(opts.clients)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        while time.monotonic() < stop_at and any(t.is_alive() for t in threads):
            time.sleep(min(10.0, max(0.0, stop_at - time.monotonic())))
            left = max(0.0, stop_at - time.monotonic())
            print(f"  {name}: {len(results)} requests, {left:.0f} s left", file=sys.stderr, flush=True)
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        images_run, passes = batch_totals(port) - before
    finally:
        proc.terminate()
        proc.wait(60)
    ok = sorted(t for t, status in results if status == 200)
    return {
        "mode": name,
        "requests": len(results),
        "errors": sum(status != 200 for _, status in results),
        "rps": len(ok) / elapsed,
        "p50": 1000 * statistics.quantiles(ok, n=100)[49] if len(ok) > 1 else float("nan"),
        "p99": 1000 * statistics.quantiles(ok, n=100)[98] if len(ok) > 1 else float("nan"),
        "batch": images_run / passes if passes else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="default: a random-weight --model saved to a temp folder")
    parser.add_argument("--model", default="vit_tiny_patch4_32")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per mode")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap on requests per mode")
    opts = parser.parse_args()
    images = test_images()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = opts.checkpoint
        if checkpoint is None:
            import torch

            import vitkit

            torch.manual_seed(0)
            checkpoint = vitkit.save_pretrained(
                vitkit.create_model(opts.model), Path(tmp) / f"{opts.model}.safetensors"
            )
        rows = [
            run_mode(name, checkpoint, args, opts, images, Path(tmp) / "server.log") for name, args in MODES.items()
        ]
    print(f"\n{checkpoint.name}, {opts.clients} clients, {opts.duration:g} s per mode, {os.cpu_count()} CPUs\n")
    print("| mode | requests | errors | requests/s | p50 ms | p99 ms | mean batch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['requests']} | {r['errors']} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} "
            f"| {r['batch']:.2f} |"
        )
    print(f"\nthroughput, batching on / off: {rows[0]['rps'] / rows[1]['rps']:.2f}x")
    if any(r["errors"] for r in rows):
        raise SystemExit("errors during the load test (see the table)")


if __name__ == "__main__":
    main()
