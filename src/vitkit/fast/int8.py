"""Static int8 post-training quantisation (PT2E): export, observe real images, convert.

The CPU flow is torchao's: ``torch.export`` captures the model as an ATen graph, the X86 Inductor quantizer marks
every Linear and Conv for int8 weights (per output channel, symmetric) and int8 activations (per tensor,
asymmetric, ranges observed on the calibration images), and ``convert_pt2e`` leaves quantize/dequantize pairs
around float ops. Compiled with freezing, Inductor folds those pairs into oneDNN's int8 GEMMs (u8s8 with VNNI)
and keeps LayerNorm, softmax and GELU in float. (torch's own ``torch.ao.quantization.quantize_pt2e`` was the same
flow before it moved to torchao; torch 2.13 no longer has it.)

On CUDA there is no static int8 GEMM path in Inductor; :func:`quantize_int8` then applies torchao's dynamic int8
(weights int8 per channel, activations quantised per token at run time), which needs no calibration.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import torch
from torch import nn


@contextlib.contextmanager
def _quiet_import():
    """torchao logs a warning for each optional CUDA extension it cannot load on a CPU-only machine."""
    logger = logging.getLogger("torchao")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def pt2e_backend() -> tuple[object, object, object]:
    """(prepare_pt2e, convert_pt2e, x86_inductor_quantizer module) from torchao; torch 2.13 no longer ships its
    own copy (``torch.ao.quantization.quantize_pt2e`` is gone), so torchao is required for int8."""
    try:
        with _quiet_import():
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
    except ImportError as exc:
        fix = "pip install 'vitkit[fast]' (or torchao), or use precision='bf16'"
        raise ValueError(f"int8 needs torchao: {fix}") from exc
    return prepare_pt2e, convert_pt2e, xiq


def quantize_int8(model: nn.Module, calibration: list[torch.Tensor], example: torch.Tensor) -> nn.Module:
    """Int8 version of ``model`` (eval mode, float32) calibrated on ``calibration`` batches (B, C, H, W)."""
    if example.device.type == "cuda":
        return _quantize_dynamic_cuda(model)
    prepare_pt2e, convert_pt2e, xiq = pt2e_backend()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad(), _quiet_import():
        graph = torch.export.export(model, (example,), dynamic_shapes=({0: batch},), strict=False).module()
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(graph, quantizer)
        for images in calibration:  # observers record activation ranges
            prepared(images)
        return convert_pt2e(prepared)


def _quantize_dynamic_cuda(model: nn.Module) -> nn.Module:
    try:
        with _quiet_import():
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as exc:
        raise ValueError("int8 on CUDA needs torchao: pip install torchao, or use precision='bf16'") from exc
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model
