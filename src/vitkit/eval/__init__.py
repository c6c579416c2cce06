"""Evaluation: each task's metrics, prediction, the paper's few-shot linear probe, and the commands' functions.

The names below load on first use: the metric modules sit low in the layering (tasks use them) and the command
functions high (they ask the tasks), so importing one must not import the other.
"""

from __future__ import annotations

from vitkit.utils.lazy import lazy_attributes

_LAZY = {
    "evaluate": "vitkit.eval.api",
    "predict": "vitkit.eval.api",
    "fewshot_evaluate": "vitkit.eval.api",
    "evaluate_model": "vitkit.eval.classification",
    "FewShotResult": "vitkit.eval.fewshot",
    "EvalResult": "vitkit.eval.metrics",
    "Prediction": "vitkit.eval.prediction",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_attributes("vitkit.eval", _LAZY)
