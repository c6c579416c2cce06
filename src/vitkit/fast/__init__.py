"""Fast paths: ``optimize`` makes a trained model fast for inference (fp32, bf16 weights, int8; compiled)."""

from vitkit.fast.optimize import (
    PRECISIONS,
    OptimizedModel,
    calibration_batches,
    compiler_problem,
    for_inference,
    optimize,
    with_precision,
)

__all__ = [
    "PRECISIONS",
    "OptimizedModel",
    "calibration_batches",
    "compiler_problem",
    "for_inference",
    "optimize",
    "with_precision",
]
