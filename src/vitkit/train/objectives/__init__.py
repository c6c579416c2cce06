"""Training objectives (see ``base`` for the interface). Each module here registers its objectives on import."""

from vitkit.train.objectives.base import (
    Objective,
    build_objective,
    list_objectives,
    objective_class,
    register_objective,
)
from vitkit.train.objectives.classification import Classification, soft_cross_entropy
from vitkit.train.objectives.distill import Distillation
from vitkit.train.objectives.masked import MaskedReconstruction

__all__ = [
    "Classification",
    "Distillation",
    "MaskedReconstruction",
    "Objective",
    "build_objective",
    "list_objectives",
    "objective_class",
    "register_objective",
    "soft_cross_entropy",
]
