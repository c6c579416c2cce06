"""``vitkit export``: ONNX / TorchScript / torch.export files, verified against PyTorch before returning."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX, TorchScript or torch.export (dynamic batch, verified)",
        description="Export CHECKPOINT (any format load_pretrained reads) and check the exported file against "
        "PyTorch at batch sizes 1 and 3 (ONNX through onnxruntime).",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--format", choices=("onnx", "torchscript", "torch_export"), default="onnx")
    p.add_argument("--out", required=True, help="output file (.onnx, .pt, .pt2)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, 17 or newer (default 18)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest accepted difference to PyTorch (default 1e-4)")
    p.add_argument("--adapters", help="adapter file (or peft folder) to put onto CHECKPOINT before exporting")
    p.add_argument(
        "--merge-adapters", action="store_true", help="fold LoRA into the weights (--out X.safetensors: one checkpoint)"
    )
    p.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: weights stored in bf16, float32 in/out"
    )
    p.set_defaults(func=run)


def run_merge(args: argparse.Namespace) -> int:
    from functools import partial

    from vitkit.adapters.loading import write_merged
    from vitkit.weights import load_pretrained

    path, diff = write_merged(partial(load_pretrained, args.checkpoint), args.adapters, args.out)
    print(f"wrote {path} (plain checkpoint, LoRA merged); max |merged - adapted| logits = {diff:.2e}")
    return 0


def run(args: argparse.Namespace) -> int:
    from vitkit.weights import export_model, log_progress

    if args.merge_adapters and not args.adapters:
        raise ValueError("--merge-adapters needs the adapters to merge; pass --adapters PATH")
    if args.merge_adapters and args.out.endswith(".safetensors"):
        return run_merge(args)
    model = args.checkpoint
    if args.adapters:
        from functools import partial

        from vitkit.adapters import attach_adapters, merge_adapters
        from vitkit.weights import load_pretrained

        model = attach_adapters(partial(load_pretrained, args.checkpoint), args.adapters)
        model = merge_adapters(model) if args.merge_adapters else model
    if args.precision != "fp32":
        from vitkit.fast import with_precision
        from vitkit.weights import load_pretrained

        model = with_precision(load_pretrained(model) if isinstance(model, str) else model, args.precision)
    log_progress()
    result = export_model(model, args.out, format=args.format, opset=args.opset, atol=args.atol)
    print(
        f"wrote {result.path} ({result.format}); max |exported - PyTorch| = {result.max_abs_diff:.2e} "
        f"at batch sizes {', '.join(map(str, result.checked_batches))}"
    )
    return 0
