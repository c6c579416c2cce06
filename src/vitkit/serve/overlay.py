"""The rollout heat map drawn over the image as a PNG, with numpy and Pillow only (no matplotlib in a server)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

# Anchor colours of a perceptually ordered dark-to-bright map (close to matplotlib's 'inferno'), at 0, 1/4, ... 1.
_ANCHORS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
    dtype=np.float64,
)


def colormap(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours, linear between the anchors."""
    pos = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.minimum(pos.astype(np.int64), len(_ANCHORS) - 2)
    frac = (pos - low)[..., None]
    rgb = _ANCHORS[low] * (1.0 - frac) + _ANCHORS[low + 1] * frac
    return np.round(rgb).astype(np.uint8)


def overlay_png(pixels: torch.Tensor, heat: torch.Tensor, alpha: float = 0.6) -> bytes:
    """(3, H, W) uint8 image and a (gh, gw) map -> PNG bytes of the map (min-max scaled, bicubic-upsampled to
    H x W) blended over the image with weight ``alpha``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = pixels.permute(1, 2, 0).numpy().astype(np.float64)  # (H, W, 3)
    grid = heat.detach().double().numpy()
    span = grid.max() - grid.min()
    grid = (grid - grid.min()) / span if span > 0 else np.zeros_like(grid)
    size = (image.shape[1], image.shape[0])
    up = np.asarray(Image.fromarray(grid.astype(np.float32), mode="F").resize(size, Image.BICUBIC), np.float64)
    blended = (1.0 - alpha) * image + alpha * colormap(up).astype(np.float64)
    out = io.BytesIO()
    Image.fromarray(np.round(blended).astype(np.uint8), "RGB").save(out, format="PNG")
    return out.getvalue()
