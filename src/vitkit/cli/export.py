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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.weights import export_model, log_progress

    log_progress()
    result = export_model(args.checkpoint, args.out, format=args.format, opset=args.opset, atol=args.atol)
    print(
        f"wrote {result.path} ({result.format}); max |exported - PyTorch| = {result.max_abs_diff:.2e} "
        f"at batch sizes {', '.join(map(str, result.checked_batches))}"
    )
    return 0
