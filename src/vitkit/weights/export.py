"""Export a model for deployment (ONNX, TorchScript, ``torch.export``) and check the result against PyTorch.

Every export has a dynamic batch axis and is verified right away: the exported program runs at batch sizes
other than the one it was traced with, and its outputs must match the PyTorch model's (ONNX through
onnxruntime). A mismatch raises instead of leaving a silently wrong file behind.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vitkit.weights import io
from vitkit.weights.errors import CheckpointError

log = logging.getLogger("vitkit.weights")
FORMATS = ("onnx", "torchscript", "torch_export")
MIN_OPSET = 17
CHECK_BATCHES = (1, 3)  # differ from the traced batch (2): proves the batch axis is dynamic
LARGE_BYTES = 1_800_000_000  # ONNX protobufs stop at 2 GB; larger models keep weights in a side file


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float  # largest |exported - PyTorch| over the checked batches
    checked_batches: tuple[int, ...]


def _example(model: nn.Module, batch: int) -> torch.Tensor:
    cfg = model.cfg
    return torch.randn(batch, cfg.in_chans, *cfg.img_size, generator=torch.Generator().manual_seed(batch))


def _export_onnx(model: nn.Module, path: Path, opset: int) -> None:
    if opset < MIN_OPSET:
        raise ValueError(f"ONNX opset {opset} is too old; use {MIN_OPSET} or newer")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Export into a scratch folder under the target name (external weights are referenced by file name), then
    # move the side file(s) and finally the graph into place.
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as scratch:
        staged = Path(scratch) / path.name
        torch.onnx.export(
            model, (_example(model, 2),), str(staged), input_names=["pixel_values"], output_names=["logits"],
            opset_version=opset, dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            external_data=size > LARGE_BYTES, verbose=False,
        )  # fmt: skip
        for side in sorted(Path(scratch).iterdir(), key=lambda f: f == staged):
            os.replace(side, path.parent / side.name)


def _run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"pixel_values": x.numpy()})[0]


def _export_torchscript(model: nn.Module, path: Path) -> None:
    with warnings.catch_warnings():  # shape checks at a fixed image size are constant by design
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, _example(model, 2))
    with io.atomic_path(path) as tmp:
        traced.save(str(tmp))


def _load_torchscript(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path))


def _export_program(model: nn.Module, path: Path) -> None:
    program = torch.export.export(model, (_example(model, 2),), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    with io.atomic_path(path) as tmp:
        torch.export.save(program, str(tmp))


def export_model(
    model: nn.Module | str | Path,
    out: str | Path,
    format: str = "onnx",
    opset: int = 18,
    atol: float = 1e-4,
    output_shape: Callable[[int], tuple[int, ...] | None] | None = None,
) -> ExportResult:
    """Export ``model`` (a vitkit model or any checkpoint ``load_pretrained`` reads) to ``out`` and verify it.

    The check runs the exported file at batch sizes 1 and 3 and requires ``max |diff| <= atol * max(1, max |y|)``;
    ``output_shape(batch)`` (what the model's task answers: ``(B, K)`` logits, ``(B, K, H, W)`` maps) must match.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")
    if not isinstance(model, nn.Module):
        from vitkit.weights.load import load_pretrained

        model = load_pretrained(model)
    model = model.eval()
    out = Path(out)
    log.info("exporting to %s (%s)", out, format)
    with torch.no_grad():
        if format == "onnx":
            _export_onnx(model, out, opset)
            run = lambda x: _run_onnx(out, x)
        elif format == "torchscript":
            _export_torchscript(model, out)
            loaded = _load_torchscript(out)
            run = lambda x: loaded(x).numpy()
        else:
            _export_program(model, out)
            loaded = torch.export.load(str(out)).module()
            run = lambda x: loaded(x).numpy()
        log.info("checking %s against PyTorch at batch sizes %s", out, CHECK_BATCHES)
        worst = 0.0
        for batch in CHECK_BATCHES:
            x = _example(model, batch)
            expected = model(x).numpy()
            got = run(x)
            want = output_shape(batch) if output_shape is not None else None
            if want is not None and tuple(expected.shape) != tuple(want):
                raise CheckpointError(f"the model returns {expected.shape} for batch {batch}; its task answers {want}")
            if got.shape != expected.shape:
                raise CheckpointError(
                    f"{out}: exported model returned {got.shape} for batch {batch}, expected {expected.shape}"
                )
            diff = float(np.abs(got - expected).max())
            if diff > atol * max(1.0, float(np.abs(expected).max())):
                raise CheckpointError(f"{out}: exported outputs differ from PyTorch by {diff:.3g} at batch {batch}")
            worst = max(worst, diff)
    return ExportResult(out, format, worst, CHECK_BATCHES)
