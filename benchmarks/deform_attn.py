"""Multi-scale deformable attention's sampling core on the CPU: vitkit's one-gather formulation next to the
straightforward one (a ``grid_sample`` per level, stack, weight, sum: the original's pure-PyTorch core).

    python benchmarks/deform_attn.py                  # ViT-Adapter-T at 512x512, batch 2 and 8, float32
    python benchmarks/deform_attn.py --profile        # also torch.profiler's top ops of both, injector, batch 2

Sizes are ViT-Adapter-T's at a 512x512 input (6 heads of 32 channels, 4 points per head and level):

    injector   queries: the 32x32 ViT tokens (1,024)      values: the 1/8, 1/16, 1/32 maps (64x64, 32x32, 16x16)
    extractor  queries: the three adapter maps (5,376)     values: the 32x32 ViT tokens (1 level)

Locations are the queries' grid centres plus offsets of a few pixels (some land off the map, as trained models'
do). Both formulations are timed in alternation (median of the repeats), forward + backward and forward alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name, interleaved_medians, print_profile  # noqa: E402

from vitkit.layers.deform_attn import ms_deform_attn_grid_sample, ms_deform_attn_sample  # noqa: E402
from vitkit.models.vit_adapter import grid_centres  # noqa: E402

HEADS, HEAD_DIM, POINTS = 6, 32, 4  # ViT-Adapter-T: deform_num_heads 6, width 192, deform_ratio 1.0
CASES = {  # name -> (query grids, value levels) at a 512x512 input
    "injector": ([(32, 32)], [(64, 64), (32, 32), (16, 16)]),
    "extractor": ([(64, 64), (32, 32), (16, 16)], [(32, 32)]),
}
CORES = {"per-level grid_sample": ms_deform_attn_grid_sample, "vitkit one gather": ms_deform_attn_sample}


def make_inputs(case: str, batch: int, seed: int = 0):
    queries, levels = CASES[case]
    g = torch.Generator().manual_seed(seed)
    S, L = sum(h * w for h, w in levels), len(levels)
    value = torch.randn(batch, S, HEADS, HEAD_DIM, generator=g)
    ref = grid_centres(queries, torch.device("cpu"))[0, :, 0]  # (Lq, 2)
    size = torch.tensor([(w, h) for h, w in levels], dtype=torch.float32)  # offsets of ~2 pixels of each level
    offsets = torch.randn(batch, len(ref), HEADS, L, POINTS, 2, generator=g) * 2 / size[:, None]
    locations = ref[None, :, None, None, None, :] + offsets
    weights = torch.randn(batch, len(ref), HEADS, L * POINTS, generator=g).softmax(-1).view(*offsets.shape[:-1])
    return value, levels, locations, weights


def step(core, inputs, grad_out: torch.Tensor | None):
    """One forward (and backward when ``grad_out`` is given) of ``core``."""
    value, levels, locations, weights = inputs
    if grad_out is None:
        with torch.no_grad():
            return core(value, levels, locations, weights)
    leaves = [t.detach().requires_grad_() for t in (value, locations, weights)]
    core(leaves[0], levels, leaves[1], leaves[2]).backward(grad_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops (injector, batch 2)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); float32")
    print(f"{'case':<10} {'batch':>5} {'pass':<10} {'grid_sample ms':>14} {'vitkit ms':>10} {'speed-up':>9}")
    for case in CASES:
        for batch in args.batch:
            inputs = make_inputs(case, batch)
            grad_out = torch.randn(batch, inputs[2].shape[1], HEADS * HEAD_DIM)
            for label, grad in (("fwd + bwd", grad_out), ("fwd", None)):
                fns = {n: (lambda c=c, i=inputs, g=grad: step(c, i, g)) for n, c in CORES.items()}
                times = interleaved_medians(fns, args.repeats)
                base, mine = (times[name] * 1000 for name in CORES)
                print(f"{case:<10} {batch:>5} {label:<10} {base:>14.1f} {mine:>10.1f} {base / mine:>8.2f}x")
    if args.profile:
        inputs = make_inputs("injector", 2)
        grad_out = torch.randn(2, inputs[2].shape[1], HEADS * HEAD_DIM)
        for name, core in CORES.items():
            print_profile(f"{name}: injector, batch 2, forward + backward", lambda c=core: step(c, inputs, grad_out))


if __name__ == "__main__":
    main()
