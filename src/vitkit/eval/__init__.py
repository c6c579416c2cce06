"""Evaluation: accuracy metrics and confusion matrices, prediction, and the paper's few-shot linear probe."""

from vitkit.eval.api import Prediction, evaluate, fewshot_evaluate, predict
from vitkit.eval.evaluate import evaluate_model
from vitkit.eval.fewshot import FewShotResult
from vitkit.eval.metrics import EvalResult

__all__ = ["EvalResult", "FewShotResult", "Prediction", "evaluate", "evaluate_model", "fewshot_evaluate", "predict"]
