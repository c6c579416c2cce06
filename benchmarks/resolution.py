"""The cost that motivates Swin: inference time and peak memory of ViT and Swin of similar size against resolution.

    python benchmarks/resolution.py                       # Ti/16 vs T and B/16 vs B at 224 ... 1024 px, batch 1
    python benchmarks/resolution.py --pairs tiny --sizes 224,384 --repeats 1 --plot /tmp/res.png

ViT attends globally over (H/16)(W/16) tokens, so its attention grows with the square of the pixel count; Swin
attends inside fixed windows, so all of its work grows linearly. Each (model, size) point runs in a fresh
process: build the model at that size, one warm-up forward, then ``--repeats`` timed forwards (float32, batch 1,
no grad); peak memory is the rise of the process's resident set (VmHWM, reset after the warm-up and after
returning freed memory to the system) over the resident set before the timed forwards, i.e. the activations.
A point that exceeds ``--limit`` seconds is skipped with a note. Swin uses the window that tiles the size nearest
to 7 (7 at 224, 6 at 384, 8 at 512-1024; the original code does not pad). Prints a table and the exponent b of a
least-squares fit of the best time ~ pixels^b (and memory ~ pixels^b) per model (on a shared machine the best of the
repeats is the run least disturbed by other jobs), and draws both on log-log axes.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

PAIRS = {"tiny": ("vit_tiny_patch16_224", "swin_tiny_patch4_window7_224"),
         "base": ("vit_base_patch16_224", "swin_base_patch4_window7_224")}  # fmt: skip


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}; this benchmark needs Linux")


def swin_window(size: int, patch: int = 4, stages: int = 4, target: int = 7) -> int:
    """The window nearest ``target`` (ties: the larger) that tiles every stage of a ``size`` px image."""
    from vitkit.config.swin import tiling_problem

    grid = (size // patch, size // patch)
    fits = [m for m in range(1, grid[0] + 1) if tiling_problem(grid, stages, m) is None]
    return min(fits, key=lambda m: (abs(m - target), -m))


def measure(name: str, size: int, repeats: int, threads: int) -> dict:
    """One point, in this process: seconds per forward (median, best) and activation memory in MiB."""
    import torch

    import vitkit

    torch.set_num_threads(threads)
    changes = {"img_size": size}
    if name.startswith("swin"):
        changes["window_size"] = swin_window(size)
    model = vitkit.create_model(name, **changes).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        model(x)  # warm-up: allocator, kernel selection
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)  # return freed memory so the resident set is the model and the input only
        before = _rss_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM, the peak resident set
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
        peak = _rss_kb("VmHWM")
    return {"model": name, "size": size, "window": changes.get("window_size"), "median_s": statistics.median(times),
            "best_s": min(times), "peak_mib": (peak - before) / 1024}  # fmt: skip


def swin_flops(cfg) -> float:
    """Forward FLOPs (2 per multiply-add) of a Swin at batch 1: patch projection, per block qkv + proj + MLP and
    attention inside M x M windows (QK^T and AV: M^2 keys per token), patch merging, head."""
    ph, pw = cfg.patch_size
    n = cfg.grid_size[0] * cfg.grid_size[1]
    total = 2 * n * cfg.in_chans * ph * pw * cfg.embed_dim
    for s, (depth, dim) in enumerate(zip(cfg.depths, cfg.stage_dims)):
        tokens = n >> (2 * s)
        if s:
            total += 2 * tokens * (2 * dim) * dim  # Linear 4C' -> 2C' with C' = dim / 2
        hidden = int(dim * cfg.mlp_ratio)
        per_block = 2 * tokens * (4 * dim * dim + 2 * dim * hidden) + 4 * tokens * cfg.window_size**2 * dim
        total += depth * per_block
    return total + 2 * cfg.num_features * cfg.num_classes


def model_flops(name: str, size: int) -> float:
    """Forward FLOPs at batch 1 of the model as benchmarked (Swin with its tiling window)."""
    import vitkit

    if name.startswith("swin"):
        return swin_flops(vitkit.get_config(name, img_size=size, window_size=swin_window(size)))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import vit_flops

    return vit_flops(vitkit.get_config(name, img_size=size), 1)


def fit_exponent(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(value) against log(pixels)."""
    xs = [2 * math.log(size) for size, _ in points]
    ys = [math.log(v) for _, v in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def plot(rows: list[dict], path: Path, title: str) -> Path:
    """Analytic FLOPs, best measured time and peak activation memory against pixels, log-log, with fitted b."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    styles = {"vit": "-o", "swin": "--s"}
    for r in rows:
        r.setdefault("gflops", model_flops(r["model"], r["size"]) / 1e9)
    panels = [("gflops", "forward GFLOPs (analytic)"), ("best_s", "seconds per image (best, measured)"),
              ("peak_mib", "peak activation MiB (measured)")]  # fmt: skip
    for ax, (key, label) in zip(axes, panels):
        for name in dict.fromkeys(r["model"] for r in rows):
            pts = [(r["size"], r[key]) for r in rows if r["model"] == name and r.get(key)]
            if len(pts) < 2:
                continue
            b = fit_exponent(pts)
            ax.loglog([p**2 for p, _ in pts], [v for _, v in pts], styles[name.split("_")[0]],
                      label=f"{name} (~pixels^{b:.2f})")  # fmt: skip
        ax.set_xlabel("pixels per image (224^2 ... 1024^2)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="tiny,base", help=f"comma-separated, from {sorted(PAIRS)}")
    parser.add_argument("--sizes", default="224,384,512,768,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=float, default=600, help="seconds per point before it is skipped")
    parser.add_argument("--plot", type=Path, default=Path("docs/img/benchmarks/resolution.png"))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--from-json", type=Path, help="print and plot rows saved with --json, measuring nothing")
    parser.add_argument("--point", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)  # worker mode
    args = parser.parse_args()
    if args.point:
        print(json.dumps(measure(args.point[0], int(args.point[1]), args.repeats, args.threads)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    names = [n for pair in args.pairs.split(",") for n in PAIRS[pair]]
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        report(saved["rows"], saved["skipped"], names, args)
        return
    rows, skipped = [], []
    total = len(names) * len(sizes)
    for i, (size, name) in enumerate([(s, n) for s in sizes for n in names], 1):
        print(f"[{i}/{total}] {name} at {size} px ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--point", name, str(size), "--repeats", str(args.repeats),
               "--threads", str(args.threads)]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.limit, check=True)
        except subprocess.TimeoutExpired:
            skipped.append(f"{name} at {size} px: over {args.limit:.0f} s, skipped")
            continue
        except subprocess.CalledProcessError as err:
            skipped.append(f"{name} at {size} px: failed ({err.stderr.strip().splitlines()[-1]})")
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"    {r['median_s']:.3f} s, {r['peak_mib']:.0f} MiB", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "skipped": skipped}, indent=1))
    report(rows, skipped, names, args)


def report(rows: list[dict], skipped: list[str], names: list[str], args: argparse.Namespace) -> None:
    """The table (with analytic GFLOPs), the fitted exponents, the notes and the plot."""
    print("| model | px | window | GFLOPs | s/image (median) | s/image (best) | GFLOP/s (best) | peak activation MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        flops = model_flops(r["model"], r["size"])
        print(f"| {r['model']} | {r['size']} | {r['window'] or '-'} | {flops / 1e9:.1f} | {r['median_s']:.3f} | "
              f"{r['best_s']:.3f} | {flops / 1e9 / r['best_s']:.1f} | {r['peak_mib']:.0f} |")  # fmt: skip
    print("\n| model | FLOPs exponent b (~pixels^b) | time exponent b | memory exponent b |\n|---|---:|---:|---:|")
    for name in names:
        mine = [r for r in rows if r["model"] == name]
        if len(mine) >= 2:
            f = fit_exponent([(r["size"], model_flops(name, r["size"])) for r in mine])
            t = fit_exponent([(r["size"], r["best_s"]) for r in mine])
            m = fit_exponent([(r["size"], max(r["peak_mib"], 1e-3)) for r in mine])
            print(f"| {name} | {f:.2f} | {t:.2f} | {m:.2f} |")
    for note in skipped:
        print(f"note: {note}")
    if len(rows) >= 2:
        title = f"ViT vs Swin on this CPU ({args.threads} threads, batch 1, float32)"
        print(f"plot: {plot(rows, args.plot, title)}", file=sys.stderr)


if __name__ == "__main__":
    main()
