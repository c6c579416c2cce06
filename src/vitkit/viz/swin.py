"""What applies to windowed attention (Swin): each head's attention inside the window around a chosen point, and
the mean attention distance per block and head; class-token rollout and position-embedding similarity do not.

Swin attends only within MxM windows of (for odd blocks) a map rolled by M/2; a query's keys are therefore the
tokens of its window, placed back at their unrolled positions. Distances are in input pixels: a token of stage s
covers ``patch * 2^s`` pixels, so windows reach further at every stage even though M stays the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from torch import nn

from vitkit.config.swin import stage_grids
from vitkit.utils.progress import Progress
from vitkit.viz.capture import image_size_pair, prepare_model
from vitkit.viz.embeddings import filter_components
from vitkit.viz.images import find_images, image_labels, load_images, to_display, to_input
from vitkit.viz.plot import HEAT_CMAP, grid_figsize, plot_filters, save_figure


def window_attention_at(model: nn.Module, images: torch.Tensor, point: tuple[int, int]) -> list[torch.Tensor]:
    """Per block, (B, heads, H_s, W_s) attention that the token under pixel ``point`` (y, x) pays to the keys of
    its window, at their unrolled positions on the stage's map (zero outside the window)."""
    with torch.no_grad():
        entries = model.window_attention(images)
    out = []
    for e in entries:
        (H, W), M, shift, r = e["grid"], e["window"], e["shift"], e["stride"]
        attn = e["attn"].float().cpu()  # (B, nW, heads, N, N)
        ty, tx = min(point[0] // r, H - 1), min(point[1] // r, W - 1)
        ry, rx = (ty - shift) % H, (tx - shift) % W  # the query on the rolled map
        window = (ry // M) * (W // M) + rx // M
        query = (ry % M) * M + rx % M
        keys = torch.arange(M * M)
        rows = (ry // M * M + keys // M + shift) % H  # each key back on the unrolled map
        cols = (rx // M * M + keys % M + shift) % W
        maps = attn.new_zeros(attn.shape[0], attn.shape[2], H, W)
        maps[:, :, rows, cols] = attn[:, window, :, query, :]
        out.append(maps)
    return out


def window_offsets(window: int) -> torch.Tensor:
    """(M*M, M*M) float64 Euclidean distances, in tokens, between the positions of an MxM window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    return torch.cdist(coords.T.double(), coords.T.double())


def swin_attention_distance(
    model: nn.Module, images: torch.Tensor, batch_size: int = 32
) -> tuple[list[torch.Tensor], list[float]]:
    """(per block, (heads,) mean attention distance in pixels; per block, that of uniform attention over a window).

    Pairs the shifted-window mask separates carry exp(-100) of weight, so in-window offsets are true offsets.
    """
    model.eval()
    device = next(model.parameters()).device
    sums: list[torch.Tensor] = []
    uniform: list[float] = []
    with Progress(len(images), "attention", unit="img") as bar:
        for start in range(0, len(images), batch_size):
            with torch.no_grad():
                entries = model.window_attention(images[start : start + batch_size].to(device))
            for i, e in enumerate(entries):
                dist = window_offsets(e["window"]) * e["stride"]  # (N, N) pixels
                attn = e["attn"].double().cpu()  # (b, nW, heads, N, N)
                part = (attn * dist).sum(dim=-1).mean(dim=(1, 3)).sum(dim=0)  # (heads,): summed over images
                if start == 0:
                    sums.append(part)
                    uniform.append(float(dist.mean()))
                else:
                    sums[i] = sums[i] + part
            bar.update(len(entries[0]["attn"]))
    return [total / len(images) for total in sums], uniform


def plot_window_attention(
    image: np.ndarray, maps: Sequence[torch.Tensor], point: tuple[int, int], path: str | Path, labels: list[str],
    *, title: str, dpi: int = 100,
) -> Path:  # fmt: skip
    """One row per block of each head's window attention (heads, H_s, W_s) over ``image`` (H, W, 3), the query
    marked; each map is scaled to its own maximum. Blocks of later stages have more heads: their rows are longer."""
    cols = max(m.shape[0] for m in maps)
    fig = Figure(figsize=grid_figsize(len(maps), cols, 1.2), layout="constrained")
    axes = np.asarray(fig.subplots(len(maps), cols, squeeze=False))
    size = image.shape[:2]
    for row, (block, label) in enumerate(zip(maps, labels)):
        scale = (size[0] // block.shape[-2], size[1] // block.shape[-1])
        for h in range(cols):
            ax = axes[row, h]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(h < block.shape[0])
            if h >= block.shape[0]:
                continue
            heat = block[h].double().numpy()
            heat = np.kron(heat / max(heat.max(), 1e-12), np.ones(scale))  # token cells, not blurred
            ax.imshow(image)
            ax.imshow(heat, cmap=HEAT_CMAP, alpha=0.55, vmin=0.0, vmax=1.0)
            ax.plot(point[1], point[0], marker="+", color="white", markersize=7, mew=1.5)
            ax.set_title(f"head {h + 1}", fontsize=7)
        axes[row, 0].set_ylabel(label, fontsize=7)
    bar = ScalarMappable(cmap=HEAT_CMAP)
    fig.colorbar(bar, ax=axes.ravel().tolist(), label="attention (max of each head = 1)", shrink=0.6)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi)


def plot_swin_distance(
    distances: list[torch.Tensor], uniform: list[float], stages: list[int], path: str | Path, *, title: str,
    dpi: int = 100,
) -> Path:  # fmt: skip
    """Mean attention distance per block, one dot per head coloured by stage, and the distance of uniform
    attention over a window (dashed): heads below it look at their window's centre."""
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.subplots()
    colours = mpl.colormaps["tab10"]
    for block, (dist, stage) in enumerate(zip(distances, stages), 1):
        values = dist.double().numpy()
        label = f"stage {stage + 1}" if block == 1 or stages[block - 2] != stage else None
        ax.scatter(np.full(len(values), block), values, s=16, color=colours(stage), edgecolors="none", label=label)
    blocks = np.arange(1, len(distances) + 1)
    ax.step(blocks, uniform, where="mid", color="0.4", lw=1, ls="--", label="uniform over a window")
    ax.set_xlabel("Block (all stages, in order)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_xticks(blocks if len(blocks) <= 24 else np.linspace(1, len(blocks), 9).round().astype(int))
    ax.set_ylim(0, 1.08 * max(max(float(d.max()) for d in distances), max(uniform)) + 1e-9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi)


def block_labels(model: nn.Module, size: tuple[int, int]) -> tuple[list[str], list[int]]:
    """Row labels ('block 3 / stage 2, W' or 'SW' at input ``size``) and the stage of each block."""
    cfg = model.cfg
    grids = stage_grids((size[0] // cfg.patch_size[0], size[1] // cfg.patch_size[1]), cfg.num_stages)
    labels, stages = [], []
    for s, stage in enumerate(model.layers):
        for block in stage.blocks:
            kind = "SW" if block.shift(grids[s]) else "W"
            labels.append(f"block {len(labels) + 1}\nstage {s + 1}, {kind}")
            stages.append(s)
    return labels, stages


def draw_swin(
    model: nn.Module, name: str, kinds: list[str], images: Sequence[str | Path], out_dir: str | Path, *,
    layer: int | None = None, point: tuple[int, int] | None = None, img_size: int | Sequence[int] | None = None,
    max_images: int | None = 128, batch_size: int = 32, device: str = "cpu", dpi: int = 100, **unused: object,
) -> list[Path]:  # fmt: skip
    """The pictures of windowed attention for ``kinds`` ('heads', 'distance', 'filters'); ``layer`` (1-based over
    all blocks, -1 = last) keeps one block's row, ``point`` (y, x) in input pixels picks the query (default: the
    image centre). What ``vitkit visualize`` runs for a Swin checkpoint."""
    paths = find_images(images, max_images)
    if any(k in ("heads", "distance") for k in kinds) and not paths:
        raise ValueError("kinds 'heads' and 'distance' need at least one image; pass image files or folders")
    size = image_size_pair(img_size, model.cfg.img_size)
    model.cfg.check_image_size(size)
    model = prepare_model(model.to(device), size)
    raw = load_images(paths, model.cfg, size) if paths else None  # (B, 3, H, W) uint8
    inputs = to_input(raw, model.cfg).to(device) if paths else None
    pixels, image_names = (to_display(raw), image_labels(paths)) if paths else (None, [])
    out_dir = Path(out_dir)
    labels, stages = block_labels(model, size)
    keep = list(range(len(labels)))
    if layer is not None:
        if not (1 <= layer <= len(labels) or -len(labels) <= layer <= -1):
            raise ValueError(f"layer {layer} is outside 1..{len(labels)} (the blocks of all stages) for this model")
        keep = [layer - 1 if layer > 0 else len(labels) + layer]
    written: list[Path] = []
    point = point or (size[0] // 2, size[1] // 2)
    if not (0 <= point[0] < size[0] and 0 <= point[1] < size[1]):
        raise ValueError(f"point {point} lies outside the {size[0]}x{size[1]} input; give (y, x) pixels inside it")
    if "heads" in kinds:
        for i in range(len(inputs)):
            maps = window_attention_at(model, inputs[i : i + 1], point)
            rows = [maps[b][0] for b in keep]
            stem = image_names[i].rsplit(".", 1)[0].replace("/", "-")
            tag = "all" if len(keep) > 1 else f"block{keep[0] + 1}"
            file = out_dir / f"windows-{i + 1}-{stem}-{tag}.png"
            title = f"{name}: window attention of the token at (y={point[0]}, x={point[1]}) px ({image_names[i]})"
            written.append(plot_window_attention(pixels[i], rows, point, file, [labels[b] for b in keep],
                                                 title=title, dpi=dpi))  # fmt: skip
    if "distance" in kinds:
        dist, uniform = swin_attention_distance(model, inputs, batch_size)
        title = f"{name}: mean attention distance, {len(inputs)} images of {size[0]}x{size[1]} px"
        written.append(plot_swin_distance(dist, uniform, stages, out_dir / "distance.png", title=title, dpi=dpi))
    if "filters" in kinds:
        comps, ratio = filter_components(model)
        title = f"{name}: RGB patch-embedding filters (first {len(comps)} principal components)"
        written.append(plot_filters(comps, out_dir / "filters.png", ratio, title=title, dpi=dpi))
    return written
