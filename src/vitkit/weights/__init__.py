"""Checkpoints: read the ecosystem's weights exactly (vitkit, timm, Hugging Face, original JAX, ...), save vitkit's
own format, convert between formats, and export for deployment.

The names below load on first use, so that importing one converter module (which the family descriptors do) does
not pull in the whole loading chain.
"""

from __future__ import annotations

from vitkit.utils.lazy import lazy_attributes

_LAZY = {
    "Checkpoint": "vitkit.weights.checkpoint",
    "CheckpointError": "vitkit.weights.errors",
    "StateDictMismatchError": "vitkit.weights.errors",
    "UnsafeCheckpointError": "vitkit.weights.errors",
    "adapt_state_dict": "vitkit.families",
    "convert_checkpoint": "vitkit.weights.convert",
    "save_hf": "vitkit.weights.convert",
    "save_timm": "vitkit.weights.convert",
    "detect_format": "vitkit.weights.detect",
    "read_checkpoint": "vitkit.weights.detect",
    "ExportResult": "vitkit.weights.export",
    "export_model": "vitkit.weights.export",
    "LoadReport": "vitkit.weights.load",
    "convert_to_vitkit": "vitkit.weights.load",
    "load_pretrained": "vitkit.weights.load",
    "load_state_dict": "vitkit.weights.load",
    "log_progress": "vitkit.weights.load",
    "save_pretrained": "vitkit.weights.load",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_attributes("vitkit.weights", _LAZY)
