"""How a classifier's answer moves when its input moves: images shifted by whole pixels, and what changes.

``translate`` moves image content right and down by (dx, dy) pixels; the strip it uncovers is filled by
reflection at the border (numpy's and PyTorch's 'reflect': mirrored without repeating the edge pixel), so the
image keeps its size and no black border tells the model where the edge moved. ``shift_report`` compares each
shifted input's logits with those of the unshifted one: the share of images whose top-1 class is unchanged
(consistency), and the cosine distance between the two mean-centred logit vectors (1 - cos; centring removes the
offset softmax ignores, the cosine the model's logit scale, so models compare on one scale from 0 to 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

DIRECTIONS: dict[str, tuple[int, int]] = {"x": (1, 0), "y": (0, 1), "diagonal": (1, 1)}  # (dx, dy) per pixel


def translate(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """(B, C, H, W) images with their content moved ``dx`` pixels right and ``dy`` down (negative: left, up),
    reflection-filled; ``|dx| < W`` and ``|dy| < H``."""
    if dx == 0 and dy == 0:
        return images
    H, W = images.shape[-2:]
    if abs(dx) >= W or abs(dy) >= H:
        raise ValueError(f"a shift of ({dx}, {dy}) pixels leaves nothing of a {H}x{W} image; shift by less")
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))  # left, right, top, bottom
    padded = F.pad(images.float(), pad, mode="reflect")
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + H, left : left + W].to(images.dtype)


def centred_cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, K), (B, K) logits -> (B,) 1 - cos of the mean-centred vectors, in [0, 2]."""
    a = a.double() - a.double().mean(-1, keepdim=True)
    b = b.double() - b.double().mean(-1, keepdim=True)
    return 1 - F.cosine_similarity(a, b, dim=-1, eps=1e-12)


@torch.no_grad()
def shift_report(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Any]],
    shifts: Sequence[int] = tuple(range(1, 9)),
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Consistency, logit distance and accuracy under every shift in every direction of :data:`DIRECTIONS`.

    ``batches`` yield (uint8 images (B, C, H, W), labels); ``transform`` is the model's evaluation transform
    (normalisation), applied after the shift. Returns ``{"images", "top1", "rows": [{"direction", "shift",
    "consistency", "distance", "top1"}, ...]}``.
    """
    model.eval()
    keys = [(d, s) for d in DIRECTIONS for s in shifts]
    same = dict.fromkeys(keys, 0)
    correct = dict.fromkeys(keys, 0)
    distance = dict.fromkeys(keys, 0.0)
    count = correct0 = 0
    for images, labels in batches:
        images, labels = images.to(device), labels.to(device)
        base = _logits(model, transform, images, labels)
        top0 = base.argmax(-1)
        count += len(labels)
        correct0 += int((top0 == labels).sum())
        for direction, s in keys:
            ux, uy = DIRECTIONS[direction]
            shifted = _logits(model, transform, translate(images, ux * s, uy * s), labels)
            top = shifted.argmax(-1)
            same[direction, s] += int((top == top0).sum())
            correct[direction, s] += int((top == labels).sum())
            distance[direction, s] += float(centred_cosine_distance(base, shifted).sum())
    rows = [
        {"direction": d, "shift": s, "consistency": same[d, s] / count, "distance": distance[d, s] / count,
         "top1": correct[d, s] / count}
        for d, s in keys
    ]  # fmt: skip
    return {"images": count, "top1": correct0 / max(count, 1), "rows": rows}


def _logits(model: nn.Module, transform: Callable, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return model(transform(images, labels)[0]).float()
