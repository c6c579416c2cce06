"""Parameter-efficient fine-tuning: adapters added to a frozen backbone from outside the model.

``add_adapters(model, AdapterConfig(method="lora", rank=8))`` freezes the backbone, adds the method's modules
and leaves the head trainable; ``save_adapters`` writes only what trained, tagged with the backbone's hash;
``vitkit.load_pretrained(base, adapters=path)`` puts it back (vitkit adapter files and peft LoRA folders).
"""

from vitkit.adapters.checkpoint import backbone_hash, read_adapters, save_adapters
from vitkit.adapters.config import METHODS, AdapterConfig
from vitkit.adapters.ensemble import AdapterEnsemble
from vitkit.adapters.inject import (
    TrainableReport,
    adapter_keys,
    add_adapters,
    find_blocks,
    merge_adapters,
    set_merged,
    trainable_parameters,
)
from vitkit.adapters.loading import attach_adapters, load_ensemble, load_pretrained, load_with_adapters

__all__ = [
    "METHODS",
    "AdapterConfig",
    "AdapterEnsemble",
    "TrainableReport",
    "adapter_keys",
    "add_adapters",
    "attach_adapters",
    "backbone_hash",
    "find_blocks",
    "load_ensemble",
    "load_pretrained",
    "load_with_adapters",
    "merge_adapters",
    "read_adapters",
    "save_adapters",
    "set_merged",
    "trainable_parameters",
]
