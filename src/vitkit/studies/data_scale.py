"""``data-scale``: where does a ViT catch up with a ResNet as the training set grows? (paper Fig. 3/4 in miniature)

The plain ViT, the ResNet-20 and the hybrid (conv stem + the same ViT) of :mod:`vitkit.studies.common` are
trained on 2, 5, 10, 25, 50 and 100% of CIFAR-10's training set, each for the same number of optimiser steps at
the same batch (equal compute per point: small sets are seen for many epochs), and tested on the whole test split.
The paper's finding at 9M-300M images: ResNets win on little data, ViTs overtake them with more, and hybrids sit
in between, ahead at small budgets. At 1k-50k images the question is how the gap changes with data.

Subsets are drawn by ``train.train_subset`` with one seed: nested (each is the start of the same random
permutation, so 5% contains 2%) but not stratified; the table states each subset's smallest and largest class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitkit.studies.base import RunRecord, RunSpec, Study, StudyContext
from vitkit.studies.common import BATCH, MODELS, study_recipe
from vitkit.studies.report import (
    Column,
    markdown_table,
    millions,
    model_style,
    new_figure,
    num,
    pct,
    save,
    write_csv,
    write_markdown,
)

FRACTIONS = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
QUICK_FRACTIONS = (0.05, 0.25, 1.0)  # --quick: three of the sizes, enough for the curve's shape
ROLES = ("vit", "hybrid", "resnet")
STEPS, QUICK_STEPS = 1000, 12
QUICK_BATCH = 16


class DataScale(Study):
    name = "data-scale"
    title = "Accuracy against training-set size: ViT, hybrid and ResNet at equal compute"
    summary = "a ViT, a hybrid and a ResNet on 2-100% of CIFAR-10 at equal steps (paper Fig. 3/4)"
    runtime = "about 45 min on 2 CPU cores (Xeon with AMX, bf16, 2 jobs x 1 thread); about 1.5x that in float32"

    full, quick = (STEPS, BATCH), (QUICK_STEPS, QUICK_BATCH)

    def plan(self, ctx: StudyContext) -> list[RunSpec]:
        steps, batch = self.steps(ctx)
        specs = []
        for fraction in QUICK_FRACTIONS if ctx.quick else FRACTIONS:
            size = subset_size(fraction, ctx.train_size, batch)
            for role in ROLES:
                name = f"{role}-{round(100 * fraction):03d}pct"
                recipe = study_recipe(name, MODELS[role].section(ctx.quick), ctx.data, ctx.runs_dir, steps,
                                      cache=ctx.cache, batch_size=batch, train_subset=size)  # fmt: skip
                labels = {"model": role, "fraction": fraction, "train_images": size or ctx.train_size}
                specs.append(RunSpec(name, recipe, labels, forward_images=ctx.test_size))
        return specs

    def describe(self, ctx: StudyContext) -> str:
        steps, batch = self.steps(ctx)
        return (f"equal compute per point: every run is {steps} optimiser steps at batch {batch} "
                f"({steps * batch:,} training images drawn, whatever the subset's size), tested on all "
                f"{ctx.test_size:,} test images")  # fmt: skip

    def summarise(self, records: list[RunRecord], ctx: StudyContext) -> list[Path]:
        counts = _class_counts(ctx, sorted({r.labels["train_images"] for r in records}))
        rows = []
        for r in sorted(records, key=lambda r: (ROLES.index(r.labels["model"]), r.labels["fraction"])):
            n = r.labels["train_images"]
            low, high = counts.get(n, (None, None))
            rows.append({
                "model": r.labels["model"], "label": MODELS[r.labels["model"]].label, "fraction": r.labels["fraction"],
                "train_images": n, "class_min": low, "class_max": high, "steps": r.steps,
                "epochs": r.steps * self.steps(ctx)[1] / n, "top1": r.final.get("top1"), "top5": r.final.get("top5"),
                "params": r.params, "mflops": r.mflops, "ms_per_step": r.ms_per_step, "wall_s": r.wall_seconds,
            })  # fmt: skip
        columns = [
            Column("label", "model"),
            Column("fraction", "share", pct(0)),
            Column("train_images", "images", num(",")),
            Column("class_min", "smallest class"),
            Column("class_max", "largest class"),
            Column("epochs", "epochs", num(".1f")),
            Column("top1", "test top-1", pct(2)),
            Column("top5", "test top-5", pct(2)),
            Column("params", "params", millions),
            Column("mflops", "MFLOPs/img", num(".1f")),
            Column("ms_per_step", "ms/step", num(".0f")),
            Column("wall_s", "wall s", num(".0f")),
        ]
        out = ctx.out
        files = [write_csv(rows, [Column(key, key) for key in rows[0]] if rows else columns, out / "results.csv")]
        plot = plot_accuracy(rows, out / "accuracy_vs_data.png", self.describe(ctx))
        files.append(plot)
        sections = [
            f"{self.describe(ctx)}. Models:\n\n"
            + "\n".join(f"- **{MODELS[r].label}**: {MODELS[r].describe(ctx.quick)}" for r in ROLES),
            "Training: AdamW 1e-3, weight decay 0.05, cosine schedule with 5% warm-up, label smoothing 0.1, padded "
            "random crops and flips; the same recipe for every model (the paper trains ViT and BiT alike with Adam). "
            "Subsets are nested (one seeded permutation) but not stratified: see the smallest and largest class.",
            markdown_table(rows, columns),
            "![accuracy against training-set size](accuracy_vs_data.png)",
            findings(rows),
            "ms/step is the logged wall time per step (batch "
            f"{self.steps(ctx)[1]}), measured while the study's other jobs ran beside it; MFLOPs/img counts one "
            "forward pass (a multiply-add is 2).",
        ]
        files.append(write_markdown(out / "results.md", self.title, sections))
        return files


def subset_size(fraction: float, train_size: int, batch: int) -> int | None:
    """Images of a ``fraction`` subset (None: the whole set); at least one batch, as the engine needs."""
    if fraction >= 1:
        return None
    return max(round(fraction * train_size), batch)


def _class_counts(ctx: StudyContext, sizes: list[int]) -> dict[int, tuple[int, int]]:
    """(smallest, largest) class of each subset size, drawn as the engine draws ``train.train_subset``."""
    from collections import Counter

    from vitkit.data.config import DataConfig
    from vitkit.data.datasets import build_dataset
    from vitkit.studies.common import data_section
    from vitkit.utils.subsets import seeded_indices

    targets = build_dataset(DataConfig(**data_section(ctx.data, ctx.cache)), "train", augment=False).targets
    out = {}
    for size in sizes:
        picked = range(len(targets)) if size >= len(targets) else seeded_indices(len(targets), size, 0)
        counts = Counter(targets[i] for i in picked)
        out[size] = (min(counts.values()), max(counts.values()))
    return out


def plot_accuracy(rows: list[dict[str, Any]], path: Path, caption: str) -> Path:
    import textwrap

    fig, axes = new_figure(7.0, 4.8)
    ax = axes[0, 0]
    for i, role in enumerate(ROLES):
        points = sorted((r["train_images"], r["top1"]) for r in rows if r["model"] == role and r["top1"] is not None)
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, [100 * y for y in ys], label=MODELS[role].label, lw=2, ms=7, **model_style(role, i))
    sizes = sorted({r["train_images"] for r in rows})
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{n:,}\n({100 * f:.0f}%)" for n, f in _shares(rows, sizes)], fontsize=8)
    ax.minorticks_off()
    ax.set(xlabel="training images (share of the training set)", ylabel="test top-1 (%)")
    ax.set_title("\n".join(textwrap.wrap(caption, 90)), fontsize=8)
    fig.suptitle("Test accuracy against training-set size", fontsize=12)
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def _shares(rows: list[dict[str, Any]], sizes: list[int]) -> list[tuple[int, float]]:
    share = {r["train_images"]: r["fraction"] for r in rows}
    return [(n, share[n]) for n in sizes]


def findings(rows: list[dict[str, Any]]) -> str:
    """The gap between ViT and ResNet at each size, where (if anywhere) the ViT catches up, and whether the
    hybrid sits between them: computed from the table, so they read what this run found."""
    by = {(r["model"], r["train_images"]): r["top1"] for r in rows if r["top1"] is not None}
    sizes = sorted({n for _, n in by})
    lines, between, caught = [], 0, None
    for n in sizes:
        vit, res, hyb = by.get(("vit", n)), by.get(("resnet", n)), by.get(("hybrid", n))
        if vit is None or res is None:
            continue
        gap = 100 * (vit - res)
        if gap >= 0 and caught is None:
            caught = n
        inside = hyb is not None and min(vit, res) <= hyb <= max(vit, res)
        between += inside
        where = "" if hyb is None else ("between" if inside else "above both" if hyb > max(vit, res) else "below both")
        lines.append(f"- {n:,} images: ViT {gap:+.1f} points against the ResNet; hybrid {where}")
    head = (f"The ViT reaches the ResNet at {caught:,} images." if caught is not None else
            "The ViT does not reach the ResNet at any size here.")  # fmt: skip
    if lines:
        head += f" The hybrid sits between the two at {between} of {len(lines)} sizes."
    return "**What this run found.** " + head + "\n\n" + "\n".join(lines)


STUDY = DataScale()
