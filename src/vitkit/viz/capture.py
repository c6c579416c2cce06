"""Attention capture: every layer's attention probabilities through the model's explicit softmax path.

The fused attention kernel never materialises the probabilities, so ``get_attention_maps`` recomputes them
with the same weights; here we only batch, stack and move them off the device.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from vitkit.utils.progress import Progress


def image_size_pair(size: int | tuple[int, int] | list[int] | None, default: tuple[int, int]) -> tuple[int, int]:
    """``size`` as (H, W): an int means a square, None the model's own size."""
    if size is None:
        return tuple(default)  # type: ignore[return-value]
    if isinstance(size, int):
        return (size, size)
    if len(size) == 1:
        return (int(size[0]), int(size[0]))
    return (int(size[0]), int(size[1]))


def prepare_model(model: nn.Module, img_size: tuple[int, int] | None = None) -> nn.Module:
    """Put ``model`` in eval mode and let it accept ``img_size`` (position embeddings resampled on the fly)."""
    model.eval()
    if img_size is not None and tuple(img_size) != tuple(model.cfg.img_size):
        model.dynamic_img_size = True  # a runtime switch of the model; its config keeps describing it as built
    return model


def token_grid(model: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    """Patch grid (rows, cols) the model cuts ``images`` (B, C, H, W) into."""
    ph, pw = model.cfg.patch_stride
    return (images.shape[-2] // ph, images.shape[-1] // pw)


def iter_attention_maps(model: nn.Module, images: torch.Tensor, batch_size: int = 32) -> Iterator[torch.Tensor]:
    """Yield (L, b, heads, T, T) float32 CPU attention for ``batch_size`` images at a time.

    Reductions over many images (mean attention distance) consume the batches one by one, so memory stays at
    one batch's maps; a progress line appears when the work takes more than a second.
    """
    model.eval()
    device = next(model.parameters()).device
    with Progress(len(images), "attention", unit="img") as bar:
        for start in range(0, len(images), batch_size):
            with torch.no_grad():
                maps = model.get_attention_maps(images[start : start + batch_size].to(device))
            yield torch.stack([a.float().cpu() for a in maps])
            bar.update(len(maps[0]))


def attention_maps(model: nn.Module, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """(B, C, H, W) images -> (L, B, heads, T, T) float32 attention probabilities on the CPU.

    T counts the prefix tokens ([class], [dist]) first, then the patches in row-major order.
    """
    return torch.cat(list(iter_attention_maps(model, images, batch_size)), dim=1)
