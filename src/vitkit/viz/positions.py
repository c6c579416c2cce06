"""The position picture of a ViT (paper Fig. 7 centre) for every ``pos_embed`` kind, in one call a study can make.

Absolute kinds ('learned', 'learned2d', 'sincos1d', 'sincos2d') show the cosine similarity of each patch's position
embedding with every other patch's; 'relative' shows, in the same layout, the attention-logit bias each query patch
gives every key patch (averaged over heads and blocks); 'none' has nothing to draw and raises.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from vitkit.viz.embeddings import position_similarity

BIAS_LABEL = "Attention-logit bias (mean of heads and blocks)"


def position_picture_title(model: nn.Module) -> str:
    """What the picture shows, with the model's kind."""
    kind = model.cfg.pos_embed
    if kind == "relative":
        return "Relative position bias of each patch to all patches (relative)"
    return f"Position embedding similarity ({kind})"


def draw_position_picture(model: nn.Module, path: str | Path, title: str | None = None, dpi: int = 100) -> Path:
    """Write ``model``'s position picture as a PNG at ``path`` and return the path; raises ValueError for
    pos_embed='none'. Needs matplotlib (``vitkit[viz]``)."""
    from vitkit.viz.plot import plot_position_similarity  # matplotlib only when drawing

    maps = position_similarity(model)  # (gh, gw, gh, gw)
    title = title or position_picture_title(model)
    if model.cfg.pos_embed == "relative":  # logits, not similarities: the scale spans their range
        return plot_position_similarity(maps, path, title=title, dpi=dpi, label=BIAS_LABEL, limits=None)
    return plot_position_similarity(maps, path, title=title, dpi=dpi)
