"""Few-shot linear evaluation as in the paper (Sec. 4.1, "few-shot accuracy"): freeze the model, take the
pre-logits features of k images per class, and solve a regularised least-squares regression from them to
{-1, 1}^K targets in closed form; accuracy is that linear classifier's on the test split.

As in big_vision, features are standardised with the few-shot set's statistics and get a constant bias column
(large, so the bias is barely regularised). The draw of k images per class is repeated over seeds and the
accuracy reported as mean and standard deviation.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

BIAS_FEATURE = 100.0


def ridge_fit(x: torch.Tensor, y: torch.Tensor, l2_reg: float) -> torch.Tensor:
    """W minimising ||x W - y||^2 + l2_reg ||W||^2, in float64. x (N, D), y (N, K) -> W (D, K).

    Uses the primal (D x D) system when N >= D and the dual (N x N) one otherwise: few-shot sets are usually
    far smaller than the feature width, and both give the same W.
    """
    x, y = x.double(), y.double()
    n, d = x.shape
    if n >= d:
        return torch.linalg.solve(x.T @ x + l2_reg * torch.eye(d, dtype=x.dtype, device=x.device), x.T @ y)
    return x.T @ torch.linalg.solve(x @ x.T + l2_reg * torch.eye(n, dtype=x.dtype, device=x.device), y)


def fewshot_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    l2_reg: float = 1024.0,
) -> float:
    """Accuracy on (test_x, test_y) of the least-squares map from train_x (N, D) to {-1, 1}^K targets."""
    train_x, test_x = train_x.double(), test_x.double()
    mean = train_x.mean(dim=0, keepdim=True)
    std = train_x.std(dim=0, unbiased=False, keepdim=True) + 1e-5

    def design(feats: torch.Tensor) -> torch.Tensor:
        feats = (feats - mean) / std
        return torch.cat([feats, feats.new_full((feats.shape[0], 1), BIAS_FEATURE)], dim=1)

    targets = 2.0 * nn.functional.one_hot(train_y.long(), num_classes).double() - 1.0  # (N, K) in {-1, 1}
    w = ridge_fit(design(train_x), targets, l2_reg)
    preds = (design(test_x) @ w).argmax(dim=1)
    return (preds == test_y.to(preds.device)).double().mean().item()


def sample_shots(labels: Sequence[int], shots: int, num_classes: int, seed: int) -> list[int]:
    """``shots`` random indices of every class (seeded); nested across shot counts for a given seed."""
    gen = torch.Generator().manual_seed(seed)
    labels_t = torch.as_tensor(list(labels))
    picked = []
    for cls in range(num_classes):
        members = (labels_t == cls).nonzero().flatten()
        if len(members) < shots:
            raise ValueError(f"class {cls} has {len(members)} training images, fewer than {shots} shots")
        picked += members[torch.randperm(len(members), generator=gen)[:shots]].tolist()
    return picked


@dataclass
class FewShotResult:
    """Accuracy (fraction) per shot count: per seed, and their mean and standard deviation."""

    per_seed: dict[int, list[float]]
    l2_reg: float
    num_test: int
    seeds: list[int] = field(default_factory=list)

    def mean(self, shots: int) -> float:
        return statistics.fmean(self.per_seed[shots])

    def std(self, shots: int) -> float:
        values = self.per_seed[shots]
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def to_dict(self) -> dict:
        return {str(k): {"mean": self.mean(k), "std": self.std(k), "per_seed": v} for k, v in self.per_seed.items()} | {
            "l2_reg": self.l2_reg,
            "num_test": self.num_test,
            "seeds": self.seeds,
        }

    def table(self) -> str:
        lines = [f"{'shots':>5}  {'mean':>7}  {'std':>6}  seeds ({len(self.seeds)})"]
        for k in sorted(self.per_seed):
            seeds = " ".join(f"{100 * a:.2f}" for a in self.per_seed[k])
            lines.append(f"{k:>5}  {100 * self.mean(k):>6.2f}%  {100 * self.std(k):>5.2f}  {seeds}")
        return "\n".join(lines)


@torch.no_grad()
def extract_features(
    model: nn.Module, loader, augment=None, device: torch.device | str = "cpu", precision: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-logits features (N, D) in float32 and labels (N,) of every batch in ``loader``, model frozen."""
    from vitkit.utils.device import autocast_for, resolve_precision
    from vitkit.utils.progress import ProgressBar

    device = torch.device(device)
    precision = resolve_precision(precision, device)
    model.eval()
    feats, labels = [], []
    bar = ProgressBar(len(loader), "features", enabled=len(loader) > 1)
    for i, (images, y) in enumerate(loader):
        images = images.to(device)
        x = augment(images, y.to(device))[0] if augment is not None else images
        with autocast_for(precision, device):
            f = model.forward_head(model.forward_features(x), pre_logits=True)  # (B, D)
        feats.append(f.float().cpu())
        labels.append(y.cpu())
        bar.update(i + 1)
    bar.close()
    return torch.cat(feats), torch.cat(labels)


def fewshot_from_features(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    shots: Sequence[int] = (1, 5, 10, 25),
    seeds: Sequence[int] = (0, 1, 2),
    l2_reg: float = 1024.0,
    shot_indices: dict[tuple[int, int], list[int]] | None = None,
) -> FewShotResult:
    """Few-shot accuracy for each shot count and seed, given features of the candidate training images.

    ``shot_indices[(seed, k)]`` (positions into ``train_feats``) overrides the seeded draw.
    """
    per_seed: dict[int, list[float]] = {k: [] for k in shots}
    for seed in seeds:
        for k in shots:
            idx = shot_indices[(seed, k)] if shot_indices else sample_shots(train_labels.tolist(), k, num_classes, seed)
            acc = fewshot_accuracy(train_feats[idx], train_labels[idx], test_feats, test_labels, num_classes, l2_reg)
            per_seed[k].append(acc)
    return FewShotResult(per_seed=per_seed, l2_reg=l2_reg, num_test=len(test_labels), seeds=list(seeds))
