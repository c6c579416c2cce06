"""vitkit's inference fast path (``vitkit.optimize``) next to timm on this machine, in one process, interleaved.

    python benchmarks/fastpath.py                           # Ti/S/B-16, 224 px, batch 16 and 1, CPU
    python benchmarks/fastpath.py --models vit_base_patch16_224 --batches 16 --profile bf16 int8

Per model and batch, in alternation (best of ``--repeats``): timm float32 and bf16 autocast (eager; timm is
imported with a torchvision stand-in, see timm_peer.py), vitkit eager float32 and bf16 autocast, and
``vitkit.optimize`` fp32 / bf16 / int8 (compiled; int8 calibrated on real CIFAR-10 test images resized to the
model's resolution when ../shared/data/cifar10 exists). Both models hold the same random weights. Ratios:
fast fp32 and int8 against timm float32, fast bf16 against timm bf16 autocast. With ``--profile``, the
torch.profiler op table of one fast-path call and one timm call is printed for that precision.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_best  # noqa: E402
from timm_peer import timm_model  # noqa: E402

import vitkit  # noqa: E402

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "test"
PEERS = {"fast fp32": "timm fp32", "fast bf16": "timm bf16 autocast", "fast int8": "timm fp32"}
PEERS |= {"vitkit fp32": "timm fp32", "vitkit bf16 autocast": "timm bf16 autocast"}


def calibration_images(size: int, count: int) -> tuple[torch.Tensor, str]:
    """``count`` real CIFAR-10 test images (a few per class) resized to ``size``, normalised to [-1, 1]."""
    if not CIFAR.is_dir():
        return torch.randn(count, 3, size, size), "random normal (CIFAR-10 not found)"
    folders = sorted(p for p in CIFAR.iterdir() if p.is_dir())
    per_class = -(-count // len(folders))
    paths = [p for folder in folders for p in sorted(folder.glob("*.jpg"))[:per_class]][:count]
    arrays = []
    for path in paths:
        with Image.open(path) as img:
            arrays.append(np.asarray(img.convert("RGB")))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x, f"{len(arrays)} CIFAR-10 test images resized to {size} px"


def eager(model, x, dtype=None):
    ctx = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()

    def call():
        with torch.inference_mode(), ctx:
            return model(x)

    return call


def profile(fn, title: str, rows: int = 12) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    fn()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    print(f"\n## profile: {title}\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def bench_model(name: str, batches: list[int], precisions: list[str], repeats: int, args) -> list[tuple]:
    torch.manual_seed(0)
    peer = timm_model(name).eval()
    ours = vitkit.create_model(name).eval()
    ours.load_state_dict(peer.state_dict())
    size = ours.cfg.img_size[0]
    calib, calib_note = calibration_images(size, args.calibration)
    print(f"# {name}: calibration {calib_note}", flush=True)
    fast = {}
    for precision in precisions:
        t0 = time.perf_counter()
        example = calib[: batches[0]] if batches[0] <= len(calib) else None
        fast[precision] = vitkit.optimize(ours, precision, compile=True, calibration=calib, example=example)
        print(f"  optimize {precision}: {time.perf_counter() - t0:.0f} s (compiled={fast[precision].compiled})")
    rows = []
    for batch in batches:
        x = calib[:batch] if batch <= len(calib) else torch.randn(batch, 3, size, size)
        fns = {
            "timm fp32": eager(peer, x),
            "timm bf16 autocast": eager(peer, x, torch.bfloat16),
            "vitkit fp32": eager(ours, x),
            "vitkit bf16 autocast": eager(ours, x, torch.bfloat16),
        }
        for precision, model in fast.items():
            t0 = time.perf_counter()
            model(x)  # compiles this batch size
            print(f"  fast {precision} batch {batch}: first call {time.perf_counter() - t0:.0f} s", flush=True)
            fns[f"fast {precision}"] = lambda m=model, x=x: m(x)
        secs = interleaved_best(fns, repeats if batch > 1 else 3 * repeats)
        for variant, s in secs.items():
            peer_name = PEERS.get(variant, variant)
            rows.append((name, batch, variant, batch / s, secs[peer_name] / s, peer_name))
        print_rows(rows[-len(secs) :])
        for precision in args.profile if batch == batches[0] else []:
            peer_name = PEERS[f"fast {precision}"]
            profile(fns[f"fast {precision}"], f"{name} fast {precision}, batch {batch}")
            profile(fns[peer_name], f"{name} {peer_name}, batch {batch}")
    if "int8" in fast:
        with torch.inference_mode():
            agree = (fast["int8"](calib).argmax(-1) == ours(calib).argmax(-1)).float().mean().item()
        print(f"  int8 vs fp32 top-1 agreement on the {len(calib)} calibration images (random weights): {agree:.1%}")
    return rows


def print_rows(rows: list[tuple], header: bool = True) -> None:
    if header:
        print("| model | batch | variant | img/s | ratio | peer |\n|---|---:|---|---:|---:|---|")
    for name, batch, variant, ips, ratio, peer in rows:
        print(f"| {name} | {batch} | {variant} | {ips:.1f} | {ratio:.2f} | {peer} |", flush=True)


def int8_agreement_note() -> str:
    runs = sorted(Path("runs").glob("cifar10_vit*/model.safetensors"))
    if not runs:
        return "no trained cifar10_vit checkpoint under runs/: train one (make train) to measure int8 agreement"
    command = f"vitkit eval --checkpoint {runs[0]} --data cifar10 --precision int8 --compile"
    return f"trained checkpoint {runs[0]}: measure its int8 agreement with `{command}`"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vit_base_patch16_224,vit_small_patch16_224,vit_tiny_patch16_224")
    parser.add_argument("--batches", default="16,1")
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=32, help="real images for int8 calibration")
    parser.add_argument(
        "--profile", nargs="*", default=[], choices=("fp32", "bf16", "int8"), help="op tables: fast path vs timm"
    )
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"# torch {torch.__version__}, {cpu}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M')}")
    rows = []
    for name in args.models.split(","):
        batches = [int(b) for b in args.batches.split(",")]
        rows += bench_model(name, batches, args.precisions.split(","), args.repeats, args)
    print("\n# all rows (ratio = img/s over the peer's, measured in the same interleaved run)")
    print_rows(rows)
    print(f"\n# {int8_agreement_note()}")


if __name__ == "__main__":
    main()
