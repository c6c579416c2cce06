"""Training: typed recipes, the engine (loop, checkpointer, evaluator, schedule, EMA, DDP/FSDP) and the run folder.

``train_model(load_recipe("cifar10_vit"))`` is ``vitkit train --config cifar10_vit`` (a shipped recipe, by name).
The names below load on first use: the objectives (``vitkit.train.objectives``) sit below the tasks, the loop above
them, and importing one must not import the other.
"""

from __future__ import annotations

from vitkit.utils.lazy import lazy_attributes

_LAZY = {
    "NonFiniteLossError": "vitkit.train.meter",
    "TrainResult": "vitkit.train.loop",
    "Trainer": "vitkit.train.loop",
    "Recipe": "vitkit.train.recipe",
    "load_recipe": "vitkit.train.recipe",
    "recipe_from_dict": "vitkit.train.recipe",
    "finetune": "vitkit.train.run",
    "train_model": "vitkit.train.run",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_attributes("vitkit.train", _LAZY)
