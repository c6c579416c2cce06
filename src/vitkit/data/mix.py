"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) with label-smoothed soft targets.

Batch mode as in timm and DeiT: one lambda per batch, each image paired with the batch reversed. Targets are
the same mixture of the two images' smoothed one-hot rows, so every row sums to 1; for CutMix, lambda is
corrected to the pasted box's actual area after clipping at the border.
"""

from __future__ import annotations

import numpy as np
import torch

from vitkit.data.geometry import uniform


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(B,) int -> (B, K): 1 - smoothing + smoothing / K on the label, smoothing / K elsewhere."""
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    # torch's Beta sampler takes no generator; seed numpy's from ours so a seeded run stays reproducible.
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def cutmix_box(height: int, width: int, lam: float, generator: torch.Generator | None) -> tuple[int, int, int, int]:
    """A box of area (1 - lam) of the image, centred uniformly, clipped to the border: (y0, y1, x0, x1)."""
    cut = np.sqrt(1.0 - lam)
    ch, cw = int(height * cut), int(width * cut)
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    y0, y1 = np.clip(cy - ch // 2, 0, height), np.clip(cy + ch // 2, 0, height)
    x0, x1 = np.clip(cx - cw // 2, 0, width), np.clip(cx + cw // 2, 0, width)
    return int(y0), int(y1), int(x0), int(x1)


def mix_batch(
    x: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    mix_prob: float = 1.0,
    switch_prob: float = 0.5,
    smoothing: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mix a batch in place of ``x``; returns (images, soft targets (B, K), lambda used; 1.0 = not mixed)."""
    lam = 1.0
    use_mix = (mixup_alpha > 0 or cutmix_alpha > 0) and float(uniform((1,), generator)) < mix_prob
    if use_mix:
        use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or float(uniform((1,), generator)) < switch_prob)
        lam = _beta(cutmix_alpha if use_cutmix else mixup_alpha, generator)
        partner = x.flip(0)
        if use_cutmix:
            H, W = x.shape[-2:]
            y0, y1, x0, x1 = cutmix_box(H, W, lam, generator)
            x = x.clone()
            x[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)
        else:
            x = x * lam + partner * (1.0 - lam)
    own = smooth_one_hot(labels, num_classes, smoothing)
    targets = own * lam + own.flip(0) * (1.0 - lam) if lam < 1.0 else own
    return x, targets, lam
