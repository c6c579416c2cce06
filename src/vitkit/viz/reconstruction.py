"""MAE reconstructions as in He et al. (2022), Fig. 2: per image the original, the masked input, the
reconstruction, and the reconstruction with the visible patches pasted back.

With ``norm_pix_loss`` the model predicts each hidden patch up to its mean and variance; the picture takes those
two numbers from the original (the convention of MAE's own visualisations of such models), and its title says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from vitkit.config.mae import check_mask_ratio
from vitkit.viz.images import find_images, image_labels, load_images, to_display, to_input
from vitkit.viz.plot import _bare, _title, grid_figsize, save_figure

COLUMNS = ("original", "masked", "reconstruction", "reconstruction + visible")
MASK_GREY = 128
MAX_ROWS = 16  # one readable page


def to_pixels(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, 3, H, W) normalised -> uint8 pixels, the inverse of the input normalisation, clipped to [0, 255]."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((x * s + m) * 255).round().clamp(0, 255).to(torch.uint8).cpu()


@torch.no_grad()
def reconstruction_panels(
    model: nn.Module, inputs: torch.Tensor, mask_ratio: float | None = None, seed: int = 0, batch_size: int = 32
) -> dict[str, torch.Tensor]:
    """The four panels of every image as (B, 3, H, W) uint8, masks drawn from ``seed`` (reproducible)."""
    cfg = model.cfg
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in COLUMNS}
    for batch in inputs.split(batch_size):
        noise = torch.rand(batch.shape[0], cfg.num_patches, generator=gen).to(batch.device)
        r = model.reconstruct(batch, mask_ratio, noise)
        hidden = r["mask"].cpu().bool().expand(-1, 3, -1, -1)
        masked = to_pixels(r["original"], cfg.mean, cfg.std).masked_fill(hidden, MASK_GREY)
        out["original"].append(to_pixels(r["original"], cfg.mean, cfg.std))
        out["masked"].append(masked)
        out["reconstruction"].append(to_pixels(r["reconstruction"], cfg.mean, cfg.std))
        out["reconstruction + visible"].append(to_pixels(r["pasted"], cfg.mean, cfg.std))
    return {k: torch.cat(v) for k, v in out.items()}


def plot_reconstructions(
    panels: dict[str, torch.Tensor], path: str | Path, names: Sequence[str], *, title: str, panel: float = 1.6,
    dpi: int = 100,
) -> Path:  # fmt: skip
    """One row per image, the four :data:`COLUMNS` side by side, as the paper's Fig. 2."""
    rows = len(names)
    fig = Figure(figsize=grid_figsize(rows, len(COLUMNS), panel, colorbar=False), layout="constrained")
    axes = np.asarray(fig.subplots(rows, len(COLUMNS), squeeze=False))
    for j, column in enumerate(COLUMNS):
        images = to_display(panels[column])  # (B, H, W, 3)
        axes[0, j].set_title(column, fontsize=9)
        for i in range(rows):
            axes[i, j].imshow(images[i], interpolation="nearest")
            _bare(axes[i, j])
    for i, name in enumerate(names):
        axes[i, 0].set_ylabel(name, fontsize=7)
    _title(fig, title, size=10)
    return save_figure(fig, path, dpi)


def draw_reconstructions(
    model: nn.Module,
    name: str,
    kinds: Sequence[str],
    images: Sequence[str | Path],
    out_dir: str | Path,
    *,
    mask_ratio: float | None = None,
    seed: int = 0,
    max_images: int | None = 16,
    batch_size: int = 32,
    device: str = "cpu",
    dpi: int = 100,
    **unused: object,
) -> list[Path]:
    """``reconstruction.png`` in ``out_dir`` for a masked autoencoder (a model with ``reconstruct``, whose
    family's viewer this is) and some image files or folders."""
    cfg = model.cfg
    ratio = cfg.mask_ratio if mask_ratio is None else check_mask_ratio(mask_ratio)
    paths = find_images(images, min(max_images or MAX_ROWS, MAX_ROWS))
    if not paths:
        raise ValueError("--kind reconstruction needs at least one image; pass image files or folders after it")
    model = model.to(device).eval()
    inputs = to_input(load_images(paths, cfg, cfg.img_size), cfg).to(device)
    panels = reconstruction_panels(model, inputs, ratio, seed, batch_size)
    stats = ", hidden patches' mean and variance from the original (norm_pix_loss)" if cfg.norm_pix_loss else ""
    title = f"{name}: MAE reconstruction, {ratio:.0%} of patches masked{stats}"
    return [
        plot_reconstructions(panels, Path(out_dir) / "reconstruction.png", image_labels(paths), title=title, dpi=dpi)
    ]
