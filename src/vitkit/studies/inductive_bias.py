"""``inductive-bias``: what a built-in prior buys early, and what it costs later (paper Sec. 3.1 and 4.2).

A CNN is translation-equivariant by construction; a ViT with 4x4 patches sees the same image shifted by one pixel
as different patches at different positions, and must learn what the convolution knows. The plain ViT, the hybrid
(conv stem + the same ViT) and the ResNet-20 of :mod:`vitkit.studies.common` are trained for the same steps on all
of CIFAR-10. Measured: test accuracy at log-spaced steps during training (on a fixed test subset), and for each
trained model how its answer changes when the test image moves by 1-8 pixels along x, y and the diagonal
(:mod:`vitkit.studies.shift`: reflection-filled shifts; top-1 consistency and the cosine distance of mean-centred
logits).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitkit.studies.base import RunRecord, RunSpec, Study, StudyContext
from vitkit.studies.common import BATCH, FINAL_ONLY, MODELS, study_recipe
from vitkit.studies.report import (
    Column,
    markdown_table,
    millions,
    model_style,
    new_figure,
    num,
    pct,
    plain_log_ticks,
    save,
    write_csv,
    write_markdown,
)
from vitkit.studies.shift import DIRECTIONS, shift_report
from vitkit.train.callbacks import Callback
from vitkit.utils.files import atomic_write_text

ROLES = ("vit", "hybrid", "resnet")
STEPS, QUICK_STEPS = 2000, 12
QUICK_BATCH = 16
LOG_EVERY, QUICK_LOG_EVERY = 25, 2
CURVE_IMAGES = 2000  # the fixed test subset the accuracy curve is measured on
SHIFT_IMAGES = 2000  # test images the shift measurements use
SHIFTS = tuple(range(1, 9))
CURVE_FILE = "curve.jsonl"


def curve_steps(total: int, every: int) -> list[int]:
    """Steps to evaluate at: two per doubling (total / sqrt(2)^k), rounded to multiples of ``every`` (where the
    engine calls its callbacks), before the last step (whose evaluation the engine makes itself)."""
    points, k = set(), 0
    while (step := total / 2 ** (k / 2)) >= every / 2:
        points.add(max(every, round(step / every) * every))
        k += 1
    return sorted(p for p in points if p < total)


class EvalCurve(Callback):
    """Evaluates the model at chosen steps on the run's evaluation split and appends the numbers to
    ``curve.jsonl`` in the run folder (rows after a resumed run's step are dropped: they are evaluated again)."""

    def __init__(self, steps: list[int], path: Path) -> None:
        self.steps, self.path = set(steps), Path(path)

    def on_start(self, trainer: Any) -> None:
        keep = []
        if trainer.resumed and self.path.is_file():
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            keep = [r for r in rows if r["step"] <= trainer.global_step]
        atomic_write_text("".join(json.dumps(r) + "\n" for r in keep), self.path)

    def on_step(self, trainer: Any, row: dict[str, Any]) -> None:
        if trainer.global_step not in self.steps or trainer.global_step >= trainer.total_steps:
            return
        devices = [trainer.device] if trainer.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the run draws the same augmentations with or without it
            numbers = trainer.evaluate().numbers()
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": trainer.global_step, **numbers}) + "\n")


class InductiveBias(Study):
    name = "inductive-bias"
    title = "Inductive bias: shifted inputs, and accuracy over training, for a ViT, a hybrid and a ResNet"
    summary = "how a ViT, a hybrid and a ResNet answer 1-8 pixel shifts, and accuracy against training steps"
    runtime = "about 20 min on 2 CPU cores (Xeon with AMX, bf16, 2 jobs x 1 thread); about 1.5x that in float32"

    full, quick = (STEPS, BATCH), (QUICK_STEPS, QUICK_BATCH)

    def sizes(self, ctx: StudyContext) -> tuple[int, int, int]:
        """(steps, batch, log every) of this version."""
        return (*self.steps(ctx), QUICK_LOG_EVERY if ctx.quick else LOG_EVERY)

    def plan(self, ctx: StudyContext) -> list[RunSpec]:
        steps, batch, every = self.sizes(ctx)
        curve = min(CURVE_IMAGES, ctx.test_size)
        shifted = min(SHIFT_IMAGES, ctx.test_size) * (1 + len(DIRECTIONS) * len(SHIFTS))
        forward = curve * (len(curve_steps(steps, every)) + 1) + ctx.test_size + shifted
        specs = []
        for role in ROLES:
            recipe = study_recipe(role, MODELS[role].section(ctx.quick), ctx.data, ctx.runs_dir, steps,
                                  cache=ctx.cache, batch_size=batch, eval_every_epochs=FINAL_ONLY, eval_subset=curve,
                                  log_every_steps=every)  # fmt: skip
            specs.append(RunSpec(role, recipe, {"model": role}, forward_images=forward))
        return specs

    def callbacks(self, spec: RunSpec, ctx: StudyContext) -> list[Callback]:
        steps, _, every = self.sizes(ctx)
        return [EvalCurve(curve_steps(steps, every), ctx.run_dir(spec.name) / CURVE_FILE)]

    def describe(self, ctx: StudyContext) -> str:
        steps, batch, _ = self.sizes(ctx)
        return (f"each model trained {steps} steps at batch {batch} on all {ctx.train_size:,} training images; "
                f"accuracy curve on {min(CURVE_IMAGES, ctx.test_size):,} fixed test images, shifts on "
                f"{min(SHIFT_IMAGES, ctx.test_size):,}, final top-1 on all {ctx.test_size:,}")  # fmt: skip

    def analyse(self, model: nn.Module, record: RunRecord, ctx: StudyContext, device: str = "cpu") -> dict[str, Any]:
        from vitkit.eval.classification import evaluate_model
        from vitkit.tasks import task_of
        from vitkit.utils.subsets import seeded_subset

        task = task_of(model)
        cfg = task.data_config_for(model.cfg, dataset=str(ctx.data), in_memory=True, num_workers=0, cache=ctx.cache)
        test = task.dataset(cfg, "test", augment=False)  # the model's own preprocessing, as `vitkit eval` uses
        transform = task.batch_transform(cfg, task.eval_info(model, test, str(ctx.data)), train=False)
        model = model.to(device)
        full = evaluate_model(model, task.eval_loader(test, 500, 0), transform, device=device, precision="fp32",
                              progress=False)  # fmt: skip
        subset = seeded_subset(test, min(SHIFT_IMAGES, len(test)), 2)
        report = shift_report(model, task.eval_loader(subset, 250, 0), transform, SHIFTS, device)
        return {"test_top1": full.top1, "shift": report}

    def summarise(self, records: list[RunRecord], ctx: StudyContext) -> list[Path]:
        records = sorted(records, key=lambda r: ROLES.index(r.labels["model"]))
        out = ctx.out
        curves = {r.labels["model"]: read_curve(r) for r in records}
        models = []
        for r in records:
            curve = curves[r.labels["model"]]
            models.append({
                "model": r.labels["model"], "label": MODELS[r.labels["model"]].label,
                "description": MODELS[r.labels["model"]].describe(ctx.quick), "params": r.params,
                "mflops": r.mflops, "ms_per_step": r.ms_per_step, "steps": r.steps,
                "top1": r.extra.get("test_top1", r.final.get("top1")),
                "early": _at(curve, r.steps // 10), "middle": _at(curve, r.steps // 2),
                "shift_images": r.extra["shift"]["images"],
                "consistency_1px": _mean(r, "consistency", [1]), "consistency_all": _mean(r, "consistency", SHIFTS),
                "distance_all": _mean(r, "distance", SHIFTS),
            })  # fmt: skip
        shift_rows = [{"model": r.labels["model"], **row} for r in records for row in r.extra["shift"]["rows"]]
        curve_rows = [{"model": m, **p} for m, points in curves.items() for p in points]
        files = [
            write_csv(
                shift_rows,
                [Column(k, k) for k in ("model", "direction", "shift", "consistency", "distance", "top1")],
                out / "results.csv",
            ),  # fmt: skip
            write_csv(
                curve_rows, [Column(k, k) for k in ("model", "step", "top1", "top5", "eval_loss")], out / "curve.csv"
            ),  # fmt: skip
            plot_shifts(records, out / "shift.png"),
            plot_curves(curves, out / "accuracy_vs_steps.png", self.describe(ctx)),
        ]
        steps = records[0].steps if records else 0
        first = curves[records[0].labels["model"]] if records else []
        early, middle = (_nearest(first, steps // 10), _nearest(first, steps // 2)) if first else (0, 0)
        columns = [
            Column("label", "model"),
            Column("description", "what it is"),
            Column("params", "params", millions),
            Column("mflops", "MFLOPs/img", num(".1f")),
            Column("ms_per_step", "ms/step", num(".0f")),
            Column("early", f"top-1 at step {early}", pct(1)),
            Column("middle", f"top-1 at step {middle}", pct(1)),
            Column("top1", f"test top-1 at {steps}", pct(2)),
            Column("consistency_1px", "same answer, 1 px", pct(1)),
            Column("consistency_all", "same answer, 1-8 px", pct(1)),
            Column("distance_all", "logit distance, 1-8 px", num(".3f")),
        ]
        sections = [
            self.describe(ctx) + ".",
            "Shifts move the image content right (x), down (y) or both (diagonal) by 1-8 pixels, the uncovered strip "
            "filled by reflection at the border. *Same answer*: the share of images whose top-1 class is that of the "
            "unshifted image; *logit distance*: 1 - cosine of the mean-centred logit vectors (0 = unchanged, scale-"
            "free); both averaged over the three directions. Accuracy during training is on "
            f"{min(CURVE_IMAGES, ctx.test_size):,} fixed test images; the final top-1 on the whole test split.",
            markdown_table(models, columns),
            "![consistency and logit distance against shift](shift.png)",
            "![accuracy against training steps](accuracy_vs_steps.png)",
            findings(models, early, middle),
            _shift_pivot(records),
        ]
        files.append(write_markdown(out / "results.md", self.title, sections))
        return files


def findings(models: list[dict[str, Any]], early: int, middle: int) -> str:
    """Who leads early and late, and how often a shift keeps each model's answer: read off this run's numbers."""
    if not models:
        return ""

    def line(key: str, what: str, shown) -> str:
        ranked = sorted((m for m in models if m.get(key) is not None), key=lambda m: -m[key])
        return f"- {what}: " + ", ".join(f"{m['label']} {shown(m[key])}" for m in ranked)

    percent = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    steps = models[0]["steps"]
    return "**What this run found.**\n\n" + "\n".join([
        line("early", f"top-1 early (step {early})", percent),
        line("middle", f"top-1 half-way (step {middle})", percent),
        line("top1", f"top-1 at the end (step {steps}, whole test split)", percent),
        line("consistency_1px", "same answer after a 1-pixel shift", percent),
        line("consistency_all", "same answer after 1-8 pixel shifts (mean)", percent),
    ])  # fmt: skip


def read_curve(record: RunRecord) -> list[dict[str, Any]]:
    """The run's accuracy curve: its curve.jsonl points and the final evaluation (the engine's, same subset)."""
    path = record.folder / CURVE_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    if record.final.get("top1") is not None:
        rows.append({"step": record.steps, **record.final})
    return sorted(rows, key=lambda r: r["step"])


def _nearest(curve: list[dict[str, Any]], step: int) -> int:
    """The step of the curve point nearest ``step``."""
    return min(curve, key=lambda p: abs(p["step"] - step))["step"]


def _at(curve: list[dict[str, Any]], step: int) -> float | None:
    """Top-1 at the curve point nearest ``step``."""
    if not curve:
        return None
    return min(curve, key=lambda p: abs(p["step"] - step)).get("top1")


def _mean(record: RunRecord, key: str, shifts) -> float:
    values = [row[key] for row in record.extra["shift"]["rows"] if row["shift"] in shifts]
    return sum(values) / len(values)


def _shift_pivot(records: list[RunRecord]) -> str:
    """Consistency per model, direction and shift, as one Markdown table."""
    columns = [Column("label", "model"), Column("direction", "direction")]
    columns += [Column(f"s{s}", f"{s} px", pct(1)) for s in SHIFTS]
    rows = []
    for r in records:
        for d in DIRECTIONS:
            row = {"label": MODELS[r.labels["model"]].label, "direction": d}
            row.update({f"s{x['shift']}": x["consistency"] for x in r.extra["shift"]["rows"] if x["direction"] == d})
            rows.append(row)
    return "Same top-1 answer as for the unshifted image:\n\n" + markdown_table(rows, columns)


def plot_shifts(records: list[RunRecord], path: Path) -> Path:
    fig, axes = new_figure(12.0, 6.4, 2, len(DIRECTIONS), sharex=True)
    for j, direction in enumerate(DIRECTIONS):
        for i, r in enumerate(records):
            role = r.labels["model"]
            rows = [x for x in r.extra["shift"]["rows"] if x["direction"] == direction]
            xs = [0] + [x["shift"] for x in rows]
            style = dict(label=MODELS[role].label, lw=2, ms=5, **model_style(role, i))
            axes[0, j].plot(xs, [100.0] + [100 * x["consistency"] for x in rows], **style)
            axes[1, j].plot(xs, [0.0] + [x["distance"] for x in rows], **style)
        axes[0, j].set_title(f"shift along {direction}", fontsize=11)
        axes[1, j].set_xlabel("shift (pixels)")
        for ax in axes[:, j]:
            ax.set_xticks(range(0, max(SHIFTS) + 1))
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("same top-1 as unshifted (%)")
    axes[1, 0].set_ylabel("logit distance (1 - cos, centred)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels))
    fig.suptitle("How the answer changes when the input moves (reflection-filled shifts)", fontsize=13)
    return save(fig, path)


def plot_curves(curves: dict[str, list[dict[str, Any]]], path: Path, caption: str) -> Path:
    import textwrap

    fig, axes = new_figure(7.0, 4.8)
    ax = axes[0, 0]
    for i, (role, points) in enumerate(curves.items()):
        points = [p for p in points if p.get("top1") is not None]
        ax.plot([p["step"] for p in points], [100 * p["top1"] for p in points], label=MODELS[role].label, lw=2, ms=5,
                **model_style(role, i))  # fmt: skip
    ax.set_xscale("log")
    plain_log_ticks(ax)
    ax.set(xlabel="optimiser step (log scale)", ylabel="test top-1 (%)")
    ax.set_title("\n".join(textwrap.wrap(caption, 90)), fontsize=8)
    fig.suptitle("Accuracy against training steps", fontsize=12)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save(fig, path)


STUDY = InductiveBias()
