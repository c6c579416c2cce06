"""Classification metrics accumulated batch by batch: top-k accuracy, loss, per-class accuracy and the
confusion matrix. Counts are plain sums, so results from several processes add up exactly."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vitkit.utils.files import atomic_save_figure


@dataclass
class EvalResult:
    """Accuracies are fractions in [0, 1]; ``confusion[i, j]`` counts images of class i predicted as j."""

    top1: float
    top5: float
    loss: float
    num_samples: int
    per_class: list[float]
    confusion: torch.Tensor
    classes: list[str] = field(default_factory=list)
    # With a reference model (the float32 original of an int8 or bf16 fast path): the share of images whose top-1
    # equals the reference's, and the reference's own top-1 on the same images.
    agreement: float | None = None
    reference_top1: float | None = None

    def summary(self) -> dict[str, float | int]:
        out = {"top1": self.top1, "top5": self.top5, "loss": self.loss, "num_samples": self.num_samples}
        if self.agreement is not None:
            out.update(agreement=self.agreement, reference_top1=self.reference_top1)
        return out

    def numbers(self) -> dict[str, float]:
        """What a training metrics row gets from the evaluation."""
        return {"top1": self.top1, "top5": self.top5, "eval_loss": self.loss}

    def to_dict(self) -> dict:
        return {**self.brief(), "confusion": self.confusion.tolist()}

    def brief(self) -> dict:
        """Everything but the confusion matrix (what ``vitkit eval --json`` prints)."""
        names = self.classes or [str(i) for i in range(len(self.per_class))]
        return {**self.summary(), "per_class": dict(zip(names, self.per_class)), "classes": names}

    def format(self) -> str:
        """The lines ``vitkit eval`` prints."""
        lines = [f"top-1 {100 * self.top1:.2f}%  top-5 {100 * self.top5:.2f}%  loss {self.loss:.4f}  "
                 f"({self.num_samples} images)"]  # fmt: skip
        if self.agreement is not None:
            lines.append(f"top-1 agreement with float32: {100 * self.agreement:.2f}% (float32 top-1 "
                         f"{100 * self.reference_top1:.2f}%)")  # fmt: skip
        width = max((len(c) for c in self.classes), default=5)
        lines += [f"  {name:<{width}}  {100 * acc:6.2f}%" for name, acc in zip(self.classes, self.per_class)]
        return "\n".join(lines)


class MetricAccumulator:
    """Sums correct top-1/top-k counts, the loss and the confusion matrix over batches."""

    def __init__(self, num_classes: int, topk: int = 5, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.topk = min(topk, num_classes)
        # [correct top-1, correct top-k, loss sum, count] in float64 so large sets do not lose counts.
        self.totals = torch.zeros(4, dtype=torch.float64, device=device)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """``logits`` (B, K), integer ``labels`` (B,)."""
        logits = logits.float()
        top = logits.topk(self.topk, dim=-1).indices  # (B, k)
        hits = top == labels[:, None]
        loss = F.cross_entropy(logits, labels, reduction="sum")
        self.totals += torch.stack(
            [hits[:, 0].sum(), hits.any(dim=-1).sum(), loss, torch.tensor(labels.numel(), device=logits.device)]
        ).to(self.totals)
        flat = labels * self.num_classes + top[:, 0]
        self.confusion += torch.bincount(flat, minlength=self.num_classes**2).view(self.num_classes, -1)

    def compute(self, classes: list[str] | None = None) -> EvalResult:
        top1, topk, loss, count = self.totals.tolist()
        confusion = self.confusion.cpu()
        per_class_total = confusion.sum(dim=1).clamp(min=1)
        per_class = (confusion.diagonal() / per_class_total).tolist()
        count = max(count, 1.0)
        return EvalResult(
            top1=top1 / count,
            top5=topk / count,
            loss=loss / count,
            num_samples=int(count),
            per_class=per_class,
            confusion=confusion,
            classes=list(classes or []),
        )


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[float]:
    """Fraction of rows whose label is among the k highest logits, for each k."""
    top = logits.topk(max(ks), dim=-1).indices
    hits = top == labels[:, None]
    return [hits[:, :k].any(dim=-1).float().mean().item() for k in ks]


def plot_confusion(result: EvalResult, path: str, normalize: bool = True) -> str:
    """Write the confusion matrix as a PNG (rows: true class, columns: predicted), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = result.confusion.double()
    if normalize:
        matrix = matrix / matrix.sum(dim=1, keepdim=True).clamp(min=1)
    k = matrix.shape[0]
    names = result.classes or [str(i) for i in range(k)]
    size = min(max(4.0, 0.45 * k + 2), 40)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(matrix.numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if k <= 40:
        ax.set_xticks(range(k), names, rotation=90)
        ax.set_yticks(range(k), names)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                value = matrix[i, j].item()
                text = f"{value:.2f}" if normalize else str(int(value))
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if value > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix (top-1 {100 * result.top1:.1f}%)")
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
