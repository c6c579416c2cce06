"""What the ViT-Adapter costs over the plain ViT it adapts, as segmentors with the same UperNet head: parameters,
inference at 512x512 (batch 1, no gradients) and one training step (forward + backward, batch 2 of 512 px crops),
timed in alternation on this machine, with its matmul rate as a yardstick. Swin-T + UperNet is the hierarchical
peer the adapter means to match.

    python benchmarks/segmentation.py                       # Ti models, 512 px, float32, torch's threads
    python benchmarks/segmentation.py --size 256 --repeats 5
    python benchmarks/segmentation.py --profile             # also torch.profiler's top ops of each inference

Models (random weights; speed does not depend on them):

    plain ViT-Ti      upernet_vit_tiny_patch16           ViTDet's simple pyramid from the last block's tokens
    ViT-Adapter-Ti    upernet_vit_adapter_tiny_patch16   spatial prior module + 4 injector/extractor pairs
    Swin-T            upernet_swin_tiny_patch4_window8_512 (windows of 8 tile a 512 px input at every stage)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name, interleaved_best, matmul_flops, print_profile  # noqa: E402

import vitkit  # noqa: E402

MODELS = {
    "plain ViT-Ti": "upernet_vit_tiny_patch16",
    "ViT-Adapter-Ti": "upernet_vit_adapter_tiny_patch16",
    "Swin-T": "upernet_swin_tiny_patch4_window8_512",
}
BASELINE = "plain ViT-Ti"


def calls(model: torch.nn.Module, size: int, train_batch: int) -> tuple:
    x1 = torch.randn(1, 3, size, size)
    xb, yb = torch.randn(train_batch, 3, size, size), torch.randint(0, model.cfg.num_classes, (train_batch, size, size))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            model(x1)

    def step() -> None:
        model.train()
        out = model(xb)
        logits = out[0] if isinstance(out, tuple) else out
        loss = torch.nn.functional.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return infer, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="input side in pixels (default 512)")
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each, in alternation (best is kept)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="also torch.profiler's top ops of each inference")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); float32; "
          f"{args.size}x{args.size}, 150 classes")  # fmt: skip
    models = {name: vitkit.create_model(key, num_classes=150, img_size=args.size) for name, key in MODELS.items()}
    infer, step = {}, {}
    for name, model in models.items():
        infer[name], step[name] = calls(model, args.size, args.train_batch)
        print(f"  built {name}: {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    rate = matmul_flops(torch.float32)
    inference = interleaved_best(infer, args.repeats)
    print("  inference timed", flush=True)
    training = interleaved_best(step, args.repeats)
    print(f"\nmatmul rate of this machine: {rate / 1e9:.0f} GFLOP/s (float32, 2048^3)\n")
    print("| model | parameters | inference, batch 1 | vs plain ViT | train step, batch "
          f"{args.train_batch} | vs plain ViT |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name, model in models.items():
        print(f"| {name} | {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M | {inference[name]:.2f} s | "
              f"{inference[name] / inference[BASELINE]:.2f}x | {training[name]:.2f} s | "
              f"{training[name] / training[BASELINE]:.2f}x |")  # fmt: skip
    if args.profile:
        for name in models:
            print_profile(f"{name}: inference, batch 1, {args.size} px", infer[name], calls=2)


if __name__ == "__main__":
    main()
