"""``vitkit serve CKPT``: the HTTP service and web page for a classifier (library: :func:`vitkit.serve.serve`)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint over HTTP, with a web page at / (needs vitkit[serve])")
    p.add_argument("checkpoint", help="any checkpoint `vitkit predict` reads")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=16, help="largest dynamic batch; 1 turns batching off")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="longest a request waits for a batch to fill")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted upload")
    p.add_argument("--max-pixels", type=int, default=None, help="decompression-bomb guard (default: Pillow's)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a request may wait for the model")
    p.add_argument("--topk", type=int, default=5, help="classes returned when a request does not say")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast dtype")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow start, faster batches)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitkit.serve import ServeSettings, serve

    extra = {"max_pixels": args.max_pixels} if args.max_pixels else {}
    settings = ServeSettings(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        timeout_s=args.timeout,
        topk=args.topk,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        **extra,
    )
    serve(args.checkpoint, settings, log_level=args.log_level)
    return 0
