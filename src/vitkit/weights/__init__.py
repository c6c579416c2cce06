"""Checkpoints: read the ecosystem's ViT weights exactly (vitkit, timm, Hugging Face, original JAX), save vitkit's
own format, convert between formats, and export for deployment."""

from vitkit.weights.adapt import adapt_state_dict
from vitkit.weights.convert import convert_checkpoint, save_hf, save_timm
from vitkit.weights.detect import Checkpoint, detect_format, read_checkpoint
from vitkit.weights.errors import CheckpointError, StateDictMismatchError, UnsafeCheckpointError
from vitkit.weights.export import ExportResult, export_model
from vitkit.weights.load import (
    LoadReport,
    convert_to_vitkit,
    load_pretrained,
    load_state_dict,
    log_progress,
    save_pretrained,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ExportResult",
    "LoadReport",
    "StateDictMismatchError",
    "UnsafeCheckpointError",
    "adapt_state_dict",
    "convert_checkpoint",
    "convert_to_vitkit",
    "detect_format",
    "export_model",
    "load_pretrained",
    "load_state_dict",
    "log_progress",
    "read_checkpoint",
    "save_hf",
    "save_pretrained",
    "save_timm",
]
