"""Presentation-attack detection metrics (ISO/IEC 30107-3 and the face anti-spoofing literature), and ROC/DET plots.

Scores say how likely a sample is an attack; a sample is classified as an attack when ``score >= threshold``
(a score equal to the threshold is an attack). With that rule:

- APCER(type) = attack presentations of that type classified as bona fide / attacks of that type;
  APCER = the maximum over types (ISO/IEC 30107-3's worst case, as OULU-NPU protocols report it);
- BPCER = bona fide presentations classified as attacks / bona fide presentations;
- ACER = (APCER + BPCER) / 2;  HTER = (pooled APCER over all attacks + BPCER) / 2 (CASIA-FASD / Replay-Attack);
- EER: on the set itself, (APCER + BPCER) / 2 at the candidate threshold where pooled APCER and BPCER are closest;
- ROC AUC = P(attack score > bona fide score) + P(equal) / 2 (Mann-Whitney).

The threshold is chosen on a development split (at its EER, or at a BPCER you set) and applied unchanged to test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

BONA_FIDE = "live"


@dataclass
class SpoofScores:
    """One score per sample with its attack type (``"live"`` for bona fide presentations)."""

    scores: np.ndarray
    types: list[str]

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if len(self.types) != len(self.scores):
            raise ValueError(f"{len(self.scores)} scores but {len(self.types)} attack types")
        if not self.attack.any() or self.attack.all():
            what = "attack (spoof)" if not self.attack.any() else "bona fide (live)"
            raise ValueError(f"the scores include no {what} samples; APCER and BPCER need both live and spoof data")

    @property
    def attack(self) -> np.ndarray:
        return np.array([t != BONA_FIDE for t in self.types])

    @property
    def attack_types(self) -> list[str]:
        return sorted({t for t in self.types if t != BONA_FIDE})


def rates(s: SpoofScores, threshold: float) -> tuple[float, float]:
    """(pooled APCER, BPCER) at ``threshold``."""
    attack = s.attack
    as_attack = s.scores >= threshold
    return float(np.mean(~as_attack[attack])), float(np.mean(as_attack[~attack]))


def _sweep(s: SpoofScores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct score as a threshold, plus +inf (nothing is an attack): (thresholds, APCER, BPCER)."""
    thresholds = np.append(np.unique(s.scores), np.inf)
    attack_scores, live_scores = np.sort(s.scores[s.attack]), np.sort(s.scores[~s.attack])
    # attacks below t are missed; bona fide at or above t are rejected
    apcer = np.searchsorted(attack_scores, thresholds, side="left") / len(attack_scores)
    bpcer = 1.0 - np.searchsorted(live_scores, thresholds, side="left") / len(live_scores)
    return thresholds, apcer, bpcer


def eer(s: SpoofScores) -> tuple[float, float]:
    """(EER, its threshold): the candidate where |APCER - BPCER| is smallest (then the lower error, then the lower
    threshold)."""
    thresholds, apcer, bpcer = _sweep(s)
    order = np.lexsort((thresholds, np.maximum(apcer, bpcer), np.abs(apcer - bpcer)))
    i = order[0]
    return float((apcer[i] + bpcer[i]) / 2), float(thresholds[i])


def threshold_at_bpcer(s: SpoofScores, target: float) -> float:
    """The lowest threshold whose BPCER is at most ``target`` (the lowest APCER that BPCER allows)."""
    thresholds, _, bpcer = _sweep(s)
    return float(thresholds[np.argmax(bpcer <= target + 1e-12)])


def choose_threshold(dev: SpoofScores, rule: str = "eer") -> float:
    """``"eer"`` or ``"bpcer=0.05"`` (a BPCER fraction) on the development scores."""
    if rule == "eer":
        return eer(dev)[1]
    if rule.startswith("bpcer="):
        target = float(rule.split("=", 1)[1])
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"threshold rule {rule!r}: the BPCER must be a fraction in [0, 1], e.g. bpcer=0.05")
        return threshold_at_bpcer(dev, target)
    raise ValueError(f"unknown threshold rule {rule!r}; use 'eer' or 'bpcer=FRACTION' (e.g. bpcer=0.05)")


def roc_auc(s: SpoofScores) -> float:
    """P(attack scores above bona fide) with ties counting half, from average ranks (Mann-Whitney U)."""
    values, inverse, counts = np.unique(s.scores, return_inverse=True, return_counts=True)
    below = np.cumsum(counts) - counts
    ranks = (below + (counts + 1) / 2.0)[inverse]  # 1-based average ranks
    attack = s.attack
    n_a, n_b = int(attack.sum()), int((~attack).sum())
    return float((ranks[attack].sum() - n_a * (n_a + 1) / 2) / (n_a * n_b))


@dataclass
class SpoofMetrics:
    """Error rates are fractions; ``threshold`` was chosen on the development split by ``rule``."""

    threshold: float
    rule: str
    apcer_per_type: dict[str, float]
    apcer: float
    apcer_pooled: float
    bpcer: float
    acer: float
    hter: float
    eer: float
    auc: float
    num_live: int
    num_attack: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        pct = lambda v: f"{100 * v:.2f}%"
        lines = [f"threshold {self.threshold:.6g} ({self.rule} on the development split); score >= threshold: attack"]
        for name, value in self.apcer_per_type.items():
            lines.append(f"  APCER[{name}] {pct(value):>8}  ({self.num_attack[name]} attacks)")
        lines += [
            f"  APCER (max) {pct(self.apcer):>8}   BPCER {pct(self.bpcer)}  ({self.num_live} live)",
            f"  ACER {pct(self.acer)}   HTER {pct(self.hter)}   EER {pct(self.eer)}   ROC AUC {self.auc:.4f}",
        ]
        return "\n".join(lines)


def spoof_metrics(test: SpoofScores, threshold: float, rule: str = "given") -> SpoofMetrics:
    """All metrics of ``test`` at a threshold fixed beforehand (from the development split)."""
    per_type, counts = {}, {}
    types = np.array(test.types)
    for name in test.attack_types:
        scores = test.scores[types == name]
        per_type[name] = float(np.mean(scores < threshold))
        counts[name] = int(len(scores))
    pooled, bpcer = rates(test, threshold)
    worst = max(per_type.values())
    return SpoofMetrics(
        threshold=float(threshold), rule=rule, apcer_per_type=per_type, apcer=worst, apcer_pooled=pooled,
        bpcer=bpcer, acer=(worst + bpcer) / 2, hter=(pooled + bpcer) / 2, eer=eer(test)[0], auc=roc_auc(test),
        num_live=int((~test.attack).sum()), num_attack=counts,
    )  # fmt: skip


def plot_roc_det(test: SpoofScores, threshold: float, out_dir: str | Path, title: str = "") -> list[Path]:
    """``roc.png`` (attack detection rate against BPCER) and ``det.png`` (APCER against BPCER on normal-deviate
    axes), with the development threshold's operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    from statistics import NormalDist

    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _, apcer, bpcer = _sweep(test)
    point_apcer, point_bpcer = rates(test, threshold)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(bpcer, 1 - apcer, lw=1.8, label=f"ROC (AUC {roc_auc(test):.4f})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax.scatter([point_bpcer], [1 - point_apcer], c="C3", zorder=3, label="development threshold")
    ax.set(xlabel="BPCER (live rejected as attack)", ylabel="1 - APCER (attacks detected)", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(title or "ROC")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    paths = [out_dir / "roc.png"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    plt.close(fig)

    probit = NormalDist().inv_cdf
    clip = lambda v: probit(min(max(v, 1e-4), 1 - 1e-4))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([clip(v) for v in bpcer], [clip(v) for v in apcer], lw=1.8, label="DET")
    ax.scatter([clip(point_bpcer)], [clip(point_apcer)], c="C3", zorder=3, label="development threshold")
    ticks = [0.001, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8]
    labels = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks([probit(t) for t in ticks], labels)
    ax.set_yticks([probit(t) for t in ticks], labels)
    lim = (probit(0.0005), probit(0.9))
    ax.set(xlim=lim, ylim=lim, xlabel="BPCER (%)", ylabel="APCER, all attacks (%)")
    ax.plot(lim, lim, ls=":", c="grey", lw=1, label="EER line")
    ax.set_title(title or "DET")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8)  # below: curves go anywhere
    ax.grid(alpha=0.3)
    paths.append(out_dir / "det.png")
    fig.savefig(paths[1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths
