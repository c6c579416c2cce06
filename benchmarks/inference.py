"""Inference throughput of vitkit's ViT next to Hugging Face transformers' ViT, and against the matmul rate.

    python benchmarks/inference.py                 # Ti, S, B at 224, batch 16, float32 and bf16 autocast
    python benchmarks/inference.py --device cuda --batch 128 --compile

Prints one table row per (model, dtype): images/s of both implementations, their ratio, and vitkit's achieved
FLOP/s as a share of this machine's 2048^3 matmul rate in the same dtype.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_medians, matmul_flops, vit_flops  # noqa: E402

import vitkit  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def hf_model(cfg: vitkit.ViTConfig):
    import transformers

    hf_cfg = transformers.ViTConfig(
        hidden_size=cfg.embed_dim,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_dim,
        image_size=cfg.img_size[0],
        patch_size=cfg.patch_size[0],
        num_labels=cfg.num_classes,
        layer_norm_eps=cfg.norm_eps,
    )
    return transformers.ViTForImageClassification(hf_cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vit_tiny_patch16_224,vit_small_patch16_224,vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--no-hf", action="store_true", help="skip the transformers reference")
    args = parser.parse_args()
    device = args.device
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, batch {args.batch}")
    rows = []
    for dtype_name in args.dtypes.split(","):
        dtype = DTYPES[dtype_name]
        peak = matmul_flops(dtype, device)
        print(f"# {dtype_name} 2048^3 matmul: {peak / 1e9:.1f} GFLOP/s", flush=True)
        for name in args.models.split(","):
            cfg = vitkit.get_config(name)
            ours = vitkit.create_model(name).to(device).eval()
            peers = {"vitkit": ours}
            if not args.no_hf:
                peers["transformers"] = hf_model(cfg).to(device).eval()
            if args.compile:
                peers = {k: torch.compile(m) for k, m in peers.items()}
            x = torch.randn(args.batch, 3, *cfg.img_size, device=device)
            autocast = (
                torch.autocast(device.split(":")[0], dtype=dtype)
                if dtype != torch.float32
                else contextlib.nullcontext()
            )

            calls = {k: (lambda m=m, k=k, x=x, ac=autocast: _forward(m, x, ac, k)) for k, m in peers.items()}
            secs = interleaved_medians(calls, args.repeats, device)
            flops = vit_flops(cfg, args.batch)
            ips = {k: args.batch / s for k, s in secs.items()}
            rows.append((name, dtype_name, ips["vitkit"], ips.get("transformers"), flops / secs["vitkit"] / peak))
            hf = ips.get("transformers")
            print(
                f"  {name} {dtype_name}: vitkit {ips['vitkit']:.1f} img/s" + (f", transformers {hf:.1f}" if hf else ""),
                flush=True,
            )
    print()
    print("| model | dtype | vitkit img/s | transformers img/s | vitkit / transformers | vitkit FLOP/s / matmul rate |")
    print("|---|---|---:|---:|---:|---:|")
    for name, dt, ours, hf, share in rows:
        hf_txt, ratio = (f"{hf:.1f}", f"{ours / hf:.2f}") if hf else ("-", "-")
        print(f"| {name} | {dt} | {ours:.1f} | {hf_txt} | {ratio} | {share:.0%} |")


def _forward(model, x, autocast, kind):
    with torch.inference_mode(), autocast:
        return model(x) if kind == "vitkit" else model(pixel_values=x)


if __name__ == "__main__":
    main()
