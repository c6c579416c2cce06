"""One call that makes a trained model fast for inference on the machine at hand: ``optimize``.

What each precision does, and why it beats casting on the fly:

* ``fp32``: the weights as they are; ``torch.compile`` fuses the element-wise work (bias, GELU, residual adds,
  LayerNorm) into the GEMMs' neighbours, and on the CPU Inductor's *freezing* turns the weights into constants so
  oneDNN pre-packs each GEMM's weight once instead of on every call.
* ``bf16``: the weights are stored in bfloat16 (not cast by autocast on every call, which re-reads and re-writes
  every weight per forward); the input is cast once on entry and the logits back to float32 on exit.
* ``int8``: static post-training quantisation through the PT2E flow (export, insert observers, calibrate on real
  images, convert), lowered by Inductor to int8 oneDNN GEMMs on the CPU (see :mod:`vitkit.fast.int8`).

Attention always goes through ``scaled_dot_product_attention``, so the fused kernels (flash attention on CUDA
and on the CPU) are used where they exist. When compilation is impossible (no C++ compiler for Inductor, an
unsupported platform), the model runs eagerly with the same weights, after one warning line.

On a GPU the same call gives the same: bf16 weights, ``torch.compile`` (no freezing needed: cuBLAS needs no
weight pre-packing), flash attention; ``int8`` there uses torchao's dynamic int8 weight-and-activation config.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import nn

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS = ("fp32", "bf16", "int8")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32}


class _Cast(nn.Module):
    """Cast the input to the weights' dtype on entry and the output to float32 on exit (inside the graph)."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = inner
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.to(self.dtype)).float()


class OptimizedModel(nn.Module):
    """An inference-only model made by :func:`optimize`: float32 images in, float32 logits out, no gradients.

    ``eager`` keeps the uncompiled module (same weights), ``cfg`` the original model's config, ``precision`` and
    ``compiled`` say what was applied.
    """

    def __init__(self, eager: nn.Module, runner: Any, cfg: Any, precision: str, compiled: bool) -> None:
        super().__init__()
        self.eager = eager
        self.__dict__["_runner"] = runner  # not a submodule: its weights are eager's, listed once
        self.cfg = cfg
        self.precision = precision
        self.compiled = compiled
        self.training = False

    def train(self, mode: bool = True) -> OptimizedModel:
        if mode:
            raise ValueError("an optimized model is for inference only; train the original model instead")
        self.training = False  # always; children are not visited (an exported int8 graph refuses .eval())
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # freezing and int8 kernels apply only without autograd
            return self._runner(x)


def compiler_problem(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot work here, or None. On the CPU, Inductor needs a C++ compiler."""
    if device.type != "cpu":
        return None
    try:
        from torch._inductor import cpp_builder

        cpp_builder.get_cpp_compiler()
    except Exception as exc:  # InvalidCxxCompiler, or Inductor unavailable on this build
        return f"no C++ compiler for torch.compile ({type(exc).__name__}); install g++ or clang, or pass compile=False"
    return None


def _compile(module: nn.Module, device: torch.device) -> Any:
    """``torch.compile`` specialised per batch size (dynamic=False keeps the fastest kernels).

    On the CPU, Inductor's freezing makes the weights constants, so oneDNN pre-packs GEMM weights and constant
    folding removes the int8 weights' dequantisation. It must be set globally while compiling (passing it in
    ``options`` skips the pass that pre-packs quantised weights), and a new batch size compiles again, so every
    call runs under the patch.
    """
    # Every optimized model shares _Cast.forward's code object, and Dynamo keeps at most cache_size_limit graphs
    # per code object (one per model x batch size here) before silently running eagerly: leave room for many.
    dynamo_config = torch._dynamo.config
    dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, 64)
    dynamo_config.accumulated_cache_size_limit = max(dynamo_config.accumulated_cache_size_limit, 1024)
    compiled = torch.compile(module, dynamic=False)
    if device.type != "cpu":
        return compiled
    from torch._inductor import config as inductor_config

    def run(x: torch.Tensor) -> torch.Tensor:
        with inductor_config.patch(freezing=True), _quiet_inductor():
            return compiled(x)

    return run


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _example_input(model: nn.Module, calibration: list[torch.Tensor] | None, device: torch.device) -> torch.Tensor:
    if calibration:
        return calibration[0][:2].to(device)
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise ValueError("optimize needs example images for a model without .cfg: pass calibration=[images]")
    return torch.randn(2, cfg.in_chans, *cfg.img_size, device=device)


def calibration_batches(calibration: torch.Tensor | Iterable, limit: int | None = None) -> list[torch.Tensor]:
    """Normalised float images (B, C, H, W) from a tensor, a list of tensors, or a loader of (images, labels)."""
    if isinstance(calibration, torch.Tensor):
        calibration = [calibration]
    batches, seen = [], 0
    for item in calibration:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
            raise ValueError(
                "calibration images must be normalised float tensors (B, C, H, W), as the model sees them; "
                f"got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}"
            )
        batches.append(x)
        seen += len(x)
        if limit is not None and seen >= limit:
            break
    if not batches:
        raise ValueError("calibration holds no images; pass a few hundred real, normalised images")
    return batches


def optimize(
    model: nn.Module,
    precision: Precision = "fp32",
    compile: bool = True,
    calibration: torch.Tensor | Iterable | None = None,
    calibration_limit: int | None = 512,
    example: torch.Tensor | None = None,
) -> OptimizedModel:
    """A fast inference copy of ``model`` (left unchanged): ``precision`` fp32, bf16 or int8, compiled if possible.

    ``calibration``: real images as the model sees them (normalised float (B, C, H, W) tensors, or a loader of
    (images, labels)); required for int8, whose activation ranges are measured on them (up to
    ``calibration_limit`` images). Compilation happens here, on ``example`` (a batch shaped like the real ones;
    default two images), so a failure to compile falls back to eager (one warning) instead of failing on the first
    real call; each new batch size compiles once more on first use.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and calibration is None:
        raise ValueError("int8 needs calibration images to measure activation ranges: pass calibration=[images]")
    device = _device_of(model)
    batches = calibration_batches(calibration, calibration_limit) if calibration is not None else None
    example = _example_input(model, batches, device) if example is None else example.to(device)
    base = copy.deepcopy(model).eval()
    cfg = getattr(model, "cfg", None)
    if precision == "int8":
        from vitkit.fast.int8 import quantize_int8

        base = quantize_int8(base, [b.to(device) for b in batches], example)
    eager = _Cast(base.to(_DTYPES[precision]) if precision == "bf16" else base, _DTYPES[precision])
    problem = compiler_problem(device) if compile else None
    if compile and problem is None:
        runner = _compile(eager, device)
        try:
            with torch.no_grad(), _quiet_inductor():
                runner(example)  # compile now, on an example batch, so failures surface here
            return OptimizedModel(eager, runner, cfg, precision, compiled=True)
        except Exception as exc:  # any compiler failure: keep the model usable
            problem = f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    if problem is not None:
        warnings.warn(f"vitkit.optimize: {problem}; running eagerly", RuntimeWarning, stacklevel=2)
    return OptimizedModel(eager, eager, cfg, precision, compiled=False)


class _quiet_inductor:
    """Silence Inductor's per-graph log chatter while compiling (warnings still surface)."""

    def __enter__(self) -> None:
        self._logger = logging.getLogger("torch._inductor")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._inductor")  # int8 lowering chatter

    def __exit__(self, *exc: object) -> None:
        self._warnings.__exit__(*exc)
        self._logger.setLevel(self._level)


def for_inference(
    model: nn.Module, precision: str, compile: bool, calibration: Callable[[], Iterable] | None = None
) -> nn.Module:
    """What ``vitkit eval`` / ``predict`` run: the model itself when neither compilation nor int8 is asked for
    (bf16 then stays autocast, as before), else :func:`optimize`. ``calibration`` is called only for int8."""
    if not compile and precision != "int8":
        return model
    images = calibration() if precision == "int8" and calibration is not None else None
    return optimize(model, precision, compile=compile, calibration=images)


def with_precision(model: nn.Module, precision: str) -> nn.Module:
    """A copy of ``model`` storing its weights in ``precision`` (fp32 or bf16) that still takes float32 images and
    returns float32 logits: what ``vitkit export --precision bf16`` writes (half the file, bf16 GEMMs)."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"export supports fp32 and bf16 weights, not {precision!r}; int8 needs vitkit.optimize")
    cast = _Cast(copy.deepcopy(model).eval().to(_DTYPES[precision]), _DTYPES[precision])
    cast.cfg = getattr(model, "cfg", None)
    return cast
