"""Training: typed recipes, the engine (optimiser, schedule, EMA, checkpoints, DDP) and the run folder.

``train_model(load_recipe("cifar10_vit"))`` is ``vitkit train --config cifar10_vit`` (a shipped recipe, by name).
"""

from vitkit.train.loop import NonFiniteLossError, Trainer, TrainResult
from vitkit.train.recipe import Recipe, load_recipe, recipe_from_dict
from vitkit.train.run import finetune, train_model

__all__ = [
    "NonFiniteLossError",
    "Recipe",
    "TrainResult",
    "Trainer",
    "finetune",
    "load_recipe",
    "recipe_from_dict",
    "train_model",
]
