"""The fast-path flags shared by ``vitkit predict`` and ``vitkit eval`` (see :func:`vitkit.fast.optimize`)."""

from __future__ import annotations

import argparse


def add_fast_path_arguments(p: argparse.ArgumentParser, default: str, int8_calibration: str) -> None:
    """``--precision fp32|bf16|int8`` and ``--compile``; ``int8_calibration`` says which images calibrate int8."""
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "int8"),
        default=default,
        help=f"bf16: autocast, or bf16 weights with --compile; int8: calibrated on {int8_calibration}; auto: bf16 "
        f"on a GPU or an AMX CPU, else fp32 (default: {default})",
    )
    p.add_argument("--compile", action="store_true", help="fast path: torch.compile (CPU: frozen, pre-packed weights)")
