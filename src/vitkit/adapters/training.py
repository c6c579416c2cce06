"""The recipe's ``adapter:`` section in a training run: adapt the model before the optimiser is built (it takes
only parameters with ``requires_grad``), report what trains, and save only the adapters at the end."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from vitkit.adapters.checkpoint import save_adapters
from vitkit.adapters.config import AdapterConfig
from vitkit.adapters.inject import CONFIG_ATTR, TrainableReport, add_adapters

ADAPTER_FILE = "adapters.safetensors"
log = logging.getLogger("vitkit.train")


def adapt_for_training(model: nn.Module, cfg: AdapterConfig, announce: bool = True) -> TrainableReport:
    """Add ``cfg``'s adapters (``method: none`` adds nothing) and log the trainable parameters and their share."""
    report = add_adapters(model, cfg)
    if announce and cfg.method != "none":
        log.info("adapter %s: %s", cfg.method, report)
    return report


def is_adapted(model: nn.Module) -> bool:
    return getattr(model, CONFIG_ATTR, None) is not None


def save_run_adapters(model: nn.Module, folder: str | Path) -> Path:
    """``folder/adapters.safetensors``: adapter and head weights, tagged with the frozen backbone's hash."""
    path = save_adapters(model, Path(folder) / ADAPTER_FILE)
    log.info("wrote %s (load with vitkit.load_pretrained(BASE, adapters=%r))", path, str(path))
    return path
