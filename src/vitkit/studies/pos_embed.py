"""``pos-embed``: does it matter how a ViT is told where its patches are? (paper Appendix D.4, Table 8)

The plain ViT of :mod:`vitkit.studies.common` is trained with each kind of position information and nothing else
changed: none, a learned 1D table (the paper's default), a learned 2D table (row and column halves), fixed sin-cos
tables over the flattened sequence (1D) and over rows and columns (2D), and a learned relative position bias in
every block's attention (BEiT's form; the paper's "relative" row). The paper finds a large gap between none and
any position information, and little between the kinds; the study measures both on CIFAR-10 and draws each
model's position-embedding similarity (paper Fig. 7 centre).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from vitkit.studies.base import RunRecord, RunSpec, Study, StudyContext
from vitkit.studies.common import BATCH, MODELS, study_recipe
from vitkit.studies.report import Column, markdown_table, millions, num, pct, tile_pictures, write_csv, write_markdown

# The paper's Table 8 order, with the fixed tables beside the learned ones.
KINDS: dict[str, str] = {
    "none": "no position information (the patches are a set)",
    "learned": "learned 1D table over the patch sequence (the paper's default)",
    "learned2d": "learned 2D table: a row half and a column half of D/2 each",
    "sincos1d": "fixed 1D sin-cos table over the patch sequence (Vaswani et al.)",
    "sincos2d": "fixed 2D sin-cos table over rows and columns (MoCo v3, MAE)",
    "relative": "learned relative position bias in each block's attention (BEiT), no absolute table",
}
STEPS, QUICK_STEPS = 1500, 10
QUICK_BATCH = 16


def available_kinds() -> list[str]:
    """The kinds this vitkit's ViT offers (``ViTConfig.pos_embed``), in the study's order."""
    from vitkit.config.vit import POS_EMBEDS

    return [k for k in KINDS if k in POS_EMBEDS]


class PosEmbed(Study):
    name = "pos-embed"
    title = "Position embeddings: none, learned 1D/2D, sin-cos 1D/2D and relative on the same ViT"
    summary = "the same ViT with each kind of position embedding: accuracy and similarity pictures (paper Table 8)"
    runtime = "about 20 min on 2 CPU cores (Xeon with AMX, bf16, 2 jobs x 1 thread); about 1.3x that in float32"

    full, quick = (STEPS, BATCH), (QUICK_STEPS, QUICK_BATCH)

    def plan(self, ctx: StudyContext) -> list[RunSpec]:
        steps, batch = self.steps(ctx)
        specs = []
        for kind in available_kinds():
            model = MODELS["vit"].section(ctx.quick, pos_embed=kind)
            recipe = study_recipe(f"vit-{kind}", model, ctx.data, ctx.runs_dir, steps, cache=ctx.cache,
                                  batch_size=batch)  # fmt: skip
            specs.append(RunSpec(f"vit-{kind}", recipe, {"kind": kind}, forward_images=ctx.test_size))
        return specs

    def describe(self, ctx: StudyContext) -> str:
        steps, batch = self.steps(ctx)
        missing = [k for k in KINDS if k not in available_kinds()]
        note = f"; not in this vitkit: {', '.join(missing)}" if missing else ""
        return (f"{MODELS['vit'].describe(ctx.quick)}; each kind trained {steps} steps at batch {batch} on the whole "
                f"training set, tested on all {ctx.test_size:,} test images{note}")  # fmt: skip

    def analyse(self, model: nn.Module, record: RunRecord, ctx: StudyContext, device: str = "cpu") -> dict[str, Any]:
        path = ctx.out / "pictures" / f"{record.labels['kind']}.png"
        draw_position_picture(model.cpu(), path)
        return {"picture": str(path.relative_to(ctx.out))}

    def summarise(self, records: list[RunRecord], ctx: StudyContext) -> list[Path]:
        order = list(KINDS)
        records = sorted(records, key=lambda r: order.index(r.labels["kind"]))
        base = next((r.final.get("top1") for r in records if r.labels["kind"] == "none"), None)
        rows = []
        for r in records:
            top1 = r.final.get("top1")
            gain = None if base is None or top1 is None else 100 * (top1 - base)
            rows.append({"kind": r.labels["kind"], "description": KINDS[r.labels["kind"]], "top1": top1,
                         "top5": r.final.get("top5"), "vs_none": gain, "params": r.params, "mflops": r.mflops,
                         "ms_per_step": r.ms_per_step, "wall_s": r.wall_seconds,
                         "picture": r.extra.get("picture")})  # fmt: skip
        columns = [
            Column("kind", "kind"),
            Column("description", "position information"),
            Column("top1", "test top-1", pct(2)),
            Column("top5", "test top-5", pct(2)),
            Column("vs_none", "vs none (points)", num("+.2f")),
            Column("params", "params", millions),
            Column("ms_per_step", "ms/step", num(".0f")),
            Column("wall_s", "wall s", num(".0f")),
        ]
        out = ctx.out
        files = [write_csv(rows, [*columns, Column("mflops", ""), Column("picture", "")], out / "results.csv")]
        pictures = [(r["kind"], out / r["picture"], r["top1"]) for r in rows if r["picture"]]
        if pictures:
            titles = [f"{kind}" + (f"  (top-1 {100 * t:.1f}%)" if t is not None else "") for kind, _, t in pictures]
            files.append(tile_pictures([p for _, p, _ in pictures], titles, out / "position_embeddings.png",
                                       "Position-embedding similarity of each trained model"))  # fmt: skip
        sections = [
            self.describe(ctx) + ".",
            "Training: AdamW 1e-3, weight decay 0.05, cosine schedule with 5% warm-up, label smoothing 0.1, padded "
            "random crops and flips, the same for every kind.",
            markdown_table(rows, columns),
            "![position-embedding similarity](position_embeddings.png)" if pictures else "",
            "Each picture shows, for every patch, the cosine similarity of its position embedding with every other "
            "patch's (paper Fig. 7 centre); a kind without an absolute table shows what it has instead, or a note.",
        ]
        files.append(write_markdown(out / "results.md", self.title, sections))
        return files


def draw_position_picture(model: nn.Module, path: Path, title: str | None = None) -> Path:
    """The model's position picture (``vitkit.viz.draw_position_picture``: embedding similarity, or the relative
    bias), or a panel saying there is none for a model without position information."""
    if model.cfg.pos_embed != "none":
        from vitkit.viz import draw_position_picture as draw

        return Path(draw(model, path, title=title))
    from vitkit.studies.report import new_figure, save

    fig, axes = new_figure(4.0, 4.0)
    axes[0, 0].set_axis_off()
    axes[0, 0].text(0.5, 0.5, "no position information\n(pos_embed='none'):\nnothing to compare", ha="center",
                    va="center", fontsize=12)  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


STUDY = PosEmbed()
