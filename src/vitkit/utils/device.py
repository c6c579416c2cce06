"""Device choice shared by training, evaluation, prediction and visualisation."""

from __future__ import annotations

import os

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' picks this process's GPU (LOCAL_RANK under torchrun) when CUDA is available, else the CPU."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu (or auto)")
    return device
