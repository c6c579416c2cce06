"""Figures in the style of the ViT paper, drawn with matplotlib's Agg canvas (no pyplot, no global backend).

Grid figures are ``cols * panel + 1.3`` inches wide (colour bar and labels; + 0.2 for the filters, which have no
colour bar) and ``rows * panel + 0.6`` inches high (the title), so the PNG size is known from the content.
Files are written atomically.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from vitkit.utils.files import atomic_save_figure

HEAT_CMAP = "jet"
CBAR_INCHES = 1.3
TITLE_INCHES = 0.6


def grid_figsize(rows: int, cols: int, panel: float, colorbar: bool = True) -> tuple[float, float]:
    """Figure size in inches for a ``rows`` x ``cols`` grid of square panels with a title and a colour bar."""
    return (cols * panel + (CBAR_INCHES if colorbar else 0.2), rows * panel + TITLE_INCHES)


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG through a temporary file and ``os.replace``, so a reader never sees half a file."""
    return atomic_save_figure(fig, path, dpi=dpi)


def upsample(maps: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., gh, gw) patch maps -> (..., H, W) by bilinear interpolation, as float64 numpy."""
    t = torch.as_tensor(maps, dtype=torch.float64)
    lead = t.shape[:-2]
    t = F.interpolate(t.reshape(-1, 1, *t.shape[-2:]), size=size, mode="bilinear", align_corners=False)
    return t.reshape(*lead, *size).numpy()


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Scale each (..., H, W) map to a maximum of one, so weak and peaked maps share one colour bar."""
    peak = maps.max(axis=(-2, -1), keepdims=True)
    return maps / np.maximum(peak, 1e-12)


def _colorbar(fig: Figure, axes, label: str, cmap: str = HEAT_CMAP, vmin: float = 0.0, vmax: float = 1.0) -> None:
    """An opaque colour bar for ``cmap`` (the overlays are translucent, their scale should not be)."""
    import matplotlib as mpl

    scalar = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(vmin, vmax), cmap=cmap)
    fig.colorbar(scalar, ax=axes, shrink=0.8, label=label)


def _title(fig: Figure, text: str, size: float = 11) -> None:
    """A suptitle wrapped to the figure's width, so long checkpoint names are not cut off."""
    chars = max(20, int(fig.get_figwidth() * 72 / (0.55 * size)))  # ~0.55 em per character
    fig.suptitle(textwrap.fill(text, chars), fontsize=size)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def plot_rollout(
    images: np.ndarray,
    maps: torch.Tensor,
    path: str | Path,
    names: Sequence[str] | None = None,
    *,
    panel: float = 2.2,
    title: str = "Attention rollout",
    dpi: int = 100,
) -> Path:
    """One row per image (B, H, W, 3) uint8 with its rollout map (B, gh, gw): input, heat map over the input,
    and the input weighted by the map (as in the paper's Fig. 6)."""
    rows = len(images)
    fig = Figure(figsize=grid_figsize(rows, 3, panel), layout="constrained")
    axes = np.asarray(fig.subplots(rows, 3, squeeze=False))
    heat = _normalise(upsample(maps, images.shape[1:3]))  # (B, H, W) in [0, 1]
    for i, (image, mask) in enumerate(zip(images, heat, strict=True)):
        axes[i, 0].imshow(image, interpolation="bilinear")
        axes[i, 0].set_ylabel(names[i] if names else f"image {i + 1}", fontsize=8)
        axes[i, 1].imshow(image, interpolation="bilinear")
        axes[i, 1].imshow(mask, cmap=HEAT_CMAP, alpha=0.5, vmin=0.0, vmax=1.0, interpolation="bilinear")
        axes[i, 2].imshow((image * mask[..., None]).astype(np.uint8), interpolation="bilinear")
        for ax in axes[i]:
            _bare(ax)
    for ax, label in zip(axes[0], ("Input", "Rollout", "Input x rollout"), strict=True):
        ax.set_title(label, fontsize=9)
    _colorbar(fig, axes[:, 1:].ravel().tolist(), "rollout (max = 1)")
    _title(fig, title)
    return save_figure(fig, path, dpi)


def plot_head_attention(
    image: np.ndarray,
    maps: torch.Tensor,
    path: str | Path,
    layers: Sequence[int],
    *,
    title: str,
    panel: float | None = None,
    dpi: int = 100,
) -> Path:
    """Each head's readout attention (layers, heads, gh, gw) over ``image`` (H, W, 3): one row per layer when
    several layers are given, a near-square grid of heads for a single layer. Layers are numbered from 1."""
    n_layers, heads = maps.shape[:2]
    if n_layers == 1:
        cols = math.ceil(math.sqrt(heads))
        rows = math.ceil(heads / cols)
        panel = panel or 2.0
    else:
        rows, cols = n_layers, heads
        panel = panel or 1.1
    fig = Figure(figsize=grid_figsize(rows, cols, panel), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    heat = _normalise(upsample(maps, image.shape[:2]))  # (layers, heads, H, W)
    for ax in axes.ravel():
        _bare(ax)
        ax.set_frame_on(False)
    for li in range(n_layers):
        for h in range(heads):
            ax = axes.ravel()[h] if n_layers == 1 else axes[li, h]
            ax.set_frame_on(True)
            ax.imshow(image, interpolation="bilinear")
            ax.imshow(heat[li, h], cmap=HEAT_CMAP, alpha=0.55, vmin=0.0, vmax=1.0, interpolation="bilinear")
            if n_layers == 1 or li == 0:
                ax.set_title(f"head {h + 1}", fontsize=8)
        if n_layers > 1:
            axes[li, 0].set_ylabel(f"layer {layers[li]}", fontsize=8)
    _colorbar(fig, axes.ravel().tolist(), "attention (max of each head = 1)")
    _title(fig, title)
    return save_figure(fig, path, dpi)


def plot_attention_distance(
    distances: torch.Tensor,
    path: str | Path,
    *,
    title: str = "Mean attention distance",
    uniform: float | None = None,
    dpi: int = 100,
    size: tuple[float, float] = (6.0, 4.5),
) -> Path:
    """(layers, heads) mean attention distance against depth, one dot per head (paper Fig. 7 right).

    ``uniform`` draws the distance of a head that attends to all patches equally: heads below it look locally.
    """
    dist = torch.as_tensor(distances).double().numpy()
    layers, heads = dist.shape
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    depth = np.arange(1, layers + 1)
    legend = heads <= 16  # the largest paper model (ViT-H) has 16 heads; more get a colour bar instead
    cmap = ("tab10" if heads <= 10 else "tab20") if legend else "viridis"
    for h in range(heads):
        ax.scatter(depth, dist[:, h], s=18, color=_colour(cmap, h, heads), label=f"Head {h + 1}", edgecolors="none")
    ax.plot(depth, dist.mean(axis=1), color="0.3", lw=1, ls="--", label="mean of heads")
    if uniform is not None:
        ax.axhline(uniform, color="0.5", lw=1, ls=":", label="uniform attention")
    ax.set_xlabel("Network depth (layer)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_xticks(depth if layers <= 16 else np.linspace(1, layers, 9).round().astype(int))
    ax.set_ylim(0, 1.08 * max(float(dist.max()), uniform or 0.0) + 1e-9)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7, ncol=2 if heads > 8 else 1, loc="lower right", frameon=True)
    else:
        _colorbar(fig, ax, "head", cmap, 1, heads)
    _title(fig, title)
    return save_figure(fig, path, dpi)


def _colour(cmap: str, index: int, count: int):
    import matplotlib as mpl

    colormap = mpl.colormaps[cmap]
    return colormap(index) if cmap.startswith("tab") else colormap(index / max(count - 1, 1))


def similarity_mosaic(similarity: torch.Tensor | np.ndarray) -> np.ndarray:
    """(gh, gw, gh, gw) maps -> one (gh * (gh + 1) - 1, gw * (gw + 1) - 1) canvas, tiles parted by NaN lines."""
    sim = torch.as_tensor(similarity).double().numpy()
    gh, gw = sim.shape[:2]
    canvas = np.full((gh * (gh + 1) - 1, gw * (gw + 1) - 1), np.nan)
    for i in range(gh):
        for j in range(gw):
            canvas[i * (gh + 1) : i * (gh + 1) + gh, j * (gw + 1) : j * (gw + 1) + gw] = sim[i, j]
    return canvas


def plot_position_similarity(
    similarity: torch.Tensor,
    path: str | Path,
    *,
    title: str = "Position embedding similarity",
    width: float = 6.4,
    dpi: int = 100,
    label: str = "Cosine similarity",
    limits: tuple[float, float] | None = (-1.0, 1.0),
) -> Path:
    """(gh, gw, gh, gw) cosine similarities as a gh x gw grid of small maps (paper Fig. 7 centre): the tile at
    row i, column j shows how patch (i, j)'s embedding resembles every other patch's. Other pairwise maps (a
    relative position bias) pass their colour-bar ``label``; ``limits`` None spans the values' range."""
    import matplotlib as mpl

    gh, gw = similarity.shape[:2]
    if limits is None:  # the values' own range
        low, high = float(similarity.min()), float(similarity.max())
        limits = (low, max(high, low + 1e-12))
    fig = Figure(figsize=grid_figsize(gh, gw, width / max(gh, gw)), layout="constrained")
    ax = fig.subplots()
    cmap = mpl.colormaps["viridis"].with_extremes(bad="white")
    shown = ax.imshow(similarity_mosaic(similarity), cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest")
    ax.set_xticks(np.arange(gw) * (gw + 1) + (gw - 1) / 2, [str(j + 1) for j in range(gw)], fontsize=7)
    ax.set_yticks(np.arange(gh) * (gh + 1) + (gh - 1) / 2, [str(i + 1) for i in range(gh)], fontsize=7)
    ax.tick_params(length=0)
    ax.set_frame_on(False)
    ax.set_xlabel("Input patch column")
    ax.set_ylabel("Input patch row")
    fig.colorbar(shown, ax=ax, shrink=0.8, label=label)
    _title(fig, title)
    return save_figure(fig, path, dpi)


def plot_filters(
    components: torch.Tensor,
    path: str | Path,
    explained: torch.Tensor | None = None,
    *,
    cols: int = 7,
    panel: float = 1.0,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """(k, C, P, P) principal components of the patch-embedding filters as tiles (paper Fig. 7 left).

    Each tile is stretched to its own min..max, as only its pattern carries meaning; RGB for 3 channels,
    grey otherwise (the first channel).
    """
    comps = torch.as_tensor(components).float().numpy()
    k = len(comps)
    cols = min(cols, k)
    rows = math.ceil(k / cols)
    fig = Figure(figsize=grid_figsize(rows, cols, panel, colorbar=False), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    for n, comp in enumerate(comps):
        ax = axes.ravel()[n]
        tile = (comp - comp.min()) / max(float(comp.max() - comp.min()), 1e-12)  # (C, P, P) in [0, 1]
        if tile.shape[0] == 3:
            ax.imshow(tile.transpose(1, 2, 0), interpolation="nearest")
        else:
            ax.imshow(tile[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        label = f"PC {n + 1}" + (f" ({100 * float(explained[n]):.1f}%)" if explained is not None else "")
        ax.set_title(label, fontsize=6)
    _title(fig, title or f"Embedding filters (first {k} principal components)")
    return save_figure(fig, path, dpi)


def plot_point_attention(
    image: np.ndarray, maps: torch.Tensor, point: tuple[int, int], stride: tuple[int, int], path: str | Path, *,
    title: str, panel: float = 2.0, dpi: int = 100,
) -> Path:  # fmt: skip
    """Each head's attention (heads, gh, gw) of the patch under pixel ``point`` (y, x) over ``image`` (H, W, 3), a
    near-square grid of heads with the query patch outlined and the pixel marked. Maps are drawn as whole token
    cells of ``stride`` pixels (not interpolated, so each cell is one key's weight), each scaled to its maximum."""
    heads = maps.shape[0]
    cols = math.ceil(math.sqrt(heads))
    rows = math.ceil(heads / cols)
    fig = Figure(figsize=grid_figsize(rows, cols, panel), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    (ph, pw), (y, x) = stride, point
    corner = (x // pw * pw - 0.5, y // ph * ph - 0.5)  # the query patch, in imshow's pixel-centre coordinates
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for h, ax in zip(range(heads), axes.ravel()):
        heat = maps[h].double().numpy()
        heat = np.kron(heat / max(heat.max(), 1e-12), np.ones((ph, pw)))  # (gh, gw) -> (H, W) token cells
        ax.set_frame_on(True)
        ax.imshow(image)
        ax.imshow(heat, cmap=HEAT_CMAP, alpha=0.55, vmin=0.0, vmax=1.0)
        ax.add_patch(Rectangle(corner, pw, ph, fill=False, edgecolor="white", linewidth=1.5))
        ax.plot(x, y, marker="+", color="white", markersize=7, mew=1.5)
        ax.set_title(f"head {h + 1}", fontsize=8)
    fig.colorbar(ScalarMappable(cmap=HEAT_CMAP), ax=axes.ravel().tolist(), shrink=0.8,
                 label="attention (max of each head = 1)")  # fmt: skip
    chars = max(20, int(fig.get_figwidth() * 72 / (0.55 * 11)))  # wrapped to the figure's width, as plot.py does
    fig.suptitle(textwrap.fill(title, chars), fontsize=11)
    return save_figure(fig, path, dpi)
