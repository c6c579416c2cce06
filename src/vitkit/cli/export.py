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


def _task_shape(task, cfg, batch: int):
    return task.output_shape(cfg, batch, tuple(cfg.img_size))


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from vitkit.weights import export_model, load_pretrained, log_progress

    if args.merge_adapters and not args.adapters:
        raise ValueError("--merge-adapters needs the adapters to merge; pass --adapters PATH")
    if args.merge_adapters and args.out.endswith(".safetensors"):
        return run_merge(args)
    model = args.checkpoint
    if args.adapters:
        from vitkit.adapters import attach_adapters, merge_adapters

        model = attach_adapters(partial(load_pretrained, args.checkpoint), args.adapters)
        model = merge_adapters(model) if args.merge_adapters else model
    if args.precision != "fp32":
        from vitkit.fast import with_precision

        model = with_precision(load_pretrained(model) if isinstance(model, str) else model, args.precision)
    from vitkit.families import family_of
    from vitkit.tasks import task_of

    if isinstance(model, str):
        model = load_pretrained(model)
    task, cfg = (task_of(model) if family_of(model).task else None), model.cfg
    shape = partial(_task_shape, task, cfg) if task is not None else None
    log_progress()
    result = export_model(model, args.out, format=args.format, opset=args.opset, atol=args.atol, output_shape=shape)
    print(
        f"wrote {result.path} ({result.format}); max |exported - PyTorch| = {result.max_abs_diff:.2e} "
        f"at batch sizes {', '.join(map(str, result.checked_batches))}"
    )
    return 0
