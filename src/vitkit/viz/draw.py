"""One call from a checkpoint and some images to the paper's pictures: what ``vitkit visualize`` runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from vitkit.adapters.loading import load_pretrained
from vitkit.families import family_of
from vitkit.registry import create_model, list_models
from vitkit.viz.capture import image_size_pair, iter_attention_maps, prepare_model, token_grid
from vitkit.viz.distance import model_attention_distance, patch_distances
from vitkit.viz.embeddings import filter_components
from vitkit.viz.images import find_images, image_labels, load_images, to_display, to_input
from vitkit.viz.kinds import KINDS, NEEDS_IMAGES
from vitkit.viz.plot import (
    plot_attention_distance,
    plot_filters,
    plot_head_attention,
    plot_point_attention,
    plot_rollout,
)
from vitkit.viz.positions import draw_position_picture, position_picture_title
from vitkit.viz.reconstruction import draw_reconstructions
from vitkit.viz.rollout import attention_rollout, point_token, query_attention, rollout_map
from vitkit.viz.swin import draw_swin
from vitkit.weights.hub import is_hub_name

ROWS_PER_PAGE = 8
POINT_KINDS = ("heads", "rollout")  # the kinds whose query ``point`` chooses


def load_model(checkpoint: str | Path | nn.Module, adapters: str | Path | None = None) -> tuple[nn.Module, str]:
    """A model and a display name from a module, anything ``load_pretrained`` reads (a file, a folder, a hub name;
    with ``adapters`` put onto it), or a registered name (random weights, for a quick look at the machinery)."""
    if isinstance(checkpoint, nn.Module):
        if adapters is not None:
            raise ValueError("adapters go onto a checkpoint loaded from disk; pass its path, or add them to the module")
        return checkpoint, type(checkpoint).__name__
    path = Path(checkpoint)
    plus = f" + {Path(adapters).name}" if adapters is not None else ""
    if is_hub_name(str(checkpoint)):
        return load_pretrained(str(checkpoint), adapters=adapters), f"{checkpoint}{plus}"
    if path.exists():
        shown = path.resolve()
        name = f"{shown.parent.name}/{shown.name}" if path.is_file() else shown.name
        return load_pretrained(path, adapters=adapters), name + plus
    if str(checkpoint) in list_models():
        if adapters is not None:
            raise ValueError(
                f"adapters were trained on a checkpoint, not on a randomly initialised {checkpoint}; pass the "
                "checkpoint they were trained from"
            )
        return create_model(str(checkpoint)), f"{checkpoint} (random weights)"
    raise FileNotFoundError(
        f"{str(checkpoint)!r} is neither an existing checkpoint nor a registered model name; pass a checkpoint "
        "file or folder, or a name from `vitkit models`"
    )


def readout_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    stop: int,
    head_fusion: str = "mean",
    batch_size: int = 32,
    query: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rollout through layers 1..``stop`` (B, gh, gw) and each head's readout attention (L, B, heads, gh, gw);
    with ``query`` (a token index) those of that token instead of the readout.

    Computed batch by batch, so only patch-sized maps are kept, never the (T, T) matrices of all images.
    """
    grid = token_grid(model, inputs)
    prefix, pool = model.num_prefix_tokens, model.cfg.global_pool
    heat, heads = [], []
    for maps in iter_attention_maps(model, inputs, batch_size):  # (L, b, heads, T, T)
        heat.append(rollout_map(attention_rollout(maps[:stop], head_fusion), grid, prefix, pool, query))
        heads.append(torch.stack([query_attention(layer, grid, prefix, pool, query) for layer in maps]))
    return torch.cat(heat), torch.cat(heads, dim=1)


def _rollout_pages(pixels, heat, paths: list[Path], out_dir: Path, title: str, dpi: int) -> list[Path]:
    """Rollout figures of ``ROWS_PER_PAGE`` images each: rollout.png, or rollout-1.png, rollout-2.png, ..."""
    pages = range(0, len(paths), ROWS_PER_PAGE)
    labels = image_labels(paths)
    written = []
    for page, start in enumerate(pages, 1):
        rows = slice(start, start + ROWS_PER_PAGE)
        file = out_dir / ("rollout.png" if len(pages) == 1 else f"rollout-{page}.png")
        written.append(plot_rollout(pixels[rows], heat[rows], file, labels[rows], title=title, dpi=dpi))
    return written


def _head_figures(pixels, heads, layers: list[int], paths, out_dir: Path, title: str, dpi: int) -> list[Path]:
    """One figure per image of its (layers, heads, gh, gw) readout attention: heads-<n>-<stem>-<layer|all>.png."""
    tag = "all" if len(layers) > 1 else f"layer{layers[0] + 1}"
    where = "every layer" if len(layers) > 1 else f"layer {layers[0] + 1}"
    layer_numbers = [li + 1 for li in layers]
    labels = image_labels(paths)
    written = []
    for i in range(len(paths)):
        label = labels[i]
        file = out_dir / f"heads-{i + 1}-{label.rsplit('.', 1)[0].replace('/', '-')}-{tag}.png"
        text = f"{title}, {where} ({label})"
        written.append(plot_head_attention(pixels[i], heads[:, i], file, layer_numbers, title=text, dpi=dpi))
    return written


def _point_figures(pixels, heads, layer: int, point, stride, paths, out_dir: Path, title: str, dpi: int) -> list[Path]:
    """One figure per image of one layer's (heads, gh, gw) attention of the query patch:
    heads-<n>-<stem>-layer<l>-y<Y>x<X>.png."""
    labels = image_labels(paths)
    written = []
    for i, label in enumerate(labels):
        stem = label.rsplit(".", 1)[0].replace("/", "-")
        file = out_dir / f"heads-{i + 1}-{stem}-layer{layer + 1}-y{point[0]}x{point[1]}.png"
        text = f"{title}, layer {layer + 1} ({label})"
        written.append(plot_point_attention(pixels[i], heads[layer, i], point, stride, file, title=text, dpi=dpi))
    return written


def resolve_layer(layer: int | None, depth: int) -> int | None:
    """A 1-based layer number (negative counts from the end, -1 = last) as a 0-based index; None stays None."""
    if layer is None:
        return None
    if not (1 <= layer <= depth or -depth <= layer <= -1):
        raise ValueError(f"layer {layer} is outside 1..{depth} (or -1..-{depth} from the end) for this model")
    return layer - 1 if layer > 0 else depth + layer


def visualize(
    checkpoint: str | Path | nn.Module,
    images: Sequence[str | Path] = (),
    kinds: str | Sequence[str] | None = None,
    out_dir: str | Path = "viz",
    *,
    layer: int | None = None,
    img_size: int | Sequence[int] | None = None,
    head_fusion: str = "mean",
    max_images: int | None = 128,
    batch_size: int = 32,
    device: str = "cpu",
    dpi: int = 100,
    mask_ratio: float | None = None,
    point: tuple[int, int] | None = None,
    adapters: str | Path | None = None,
) -> list[Path]:
    """Draw the requested ``kinds`` (see :data:`KINDS`, or ``'all'``: all that apply to the model; default
    ``'rollout'``, or ``'heads'`` with a ``point``) for a model and write PNGs to ``out_dir``; what applies is the
    model's family's to say, and a kind that does not is refused in one line saying why.

    ``images`` are files or folders; they are resized and centre-cropped to ``img_size`` (default: the model's),
    which may be any multiple of the patch size. ``layer`` (1-based, -1 = last) picks the layer whose heads
    are drawn (default: all layers; the last with a ``point``) and where rollout stops (default: the last layer).
    ``point`` (y, x) in input pixels draws each head's attention of the token under that pixel instead of the
    readout's (which regions that patch looks at): over the whole image in a ViT, in its window in a Swin.
    ``adapters`` puts saved adapters onto the checkpoint first. Returns the files written.
    """
    if kinds is None:
        kinds = "heads" if point is not None else "rollout"
    everything = kinds == "all"
    kinds = list(KINDS) if everything else [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kind(s) {unknown}; choose from {list(KINDS)} or 'all'")
    model, name = load_model(checkpoint, adapters)
    family = family_of(model)
    applicable = family.views(model.cfg)
    if point is not None:
        _check_point_kinds(family.name, applicable, kinds, everything)
    if everything:
        kinds = list(applicable)
    for kind in kinds:
        if kind not in applicable:
            why = family.refusals.get(kind) or family.refusals.get("*", "").format(kind=kind)
            raise ValueError(why or f"--kind {kind} does not apply to a {family.name!r} model; it draws {applicable}")
    if not kinds or family.viewer not in VIEWERS:
        raise ValueError(f"no visualisation applies to a {family.name!r} model")
    options = dict(layer=layer, img_size=img_size, head_fusion=head_fusion, max_images=max_images,
                   batch_size=batch_size, device=device, dpi=dpi, mask_ratio=mask_ratio, point=point)  # fmt: skip
    return VIEWERS[family.viewer](model, name, kinds, images, Path(out_dir), **options)


def _check_point_kinds(family: str, applicable: Sequence[str], kinds: list[str], everything: bool) -> None:
    """A ``point`` chooses the query token of per-head attention (and of a ViT's rollout): refused in one line for
    a model that draws no such attention, and for kinds it would not change."""
    if "heads" not in applicable:
        shown = f"it draws {list(applicable)}" if applicable else "it draws no attention"
        raise ValueError(
            f"--point draws each head's attention of the token under a pixel (--kind heads), which a {family!r} model "
            f"does not have; {shown}"
        )
    if not everything and not set(kinds) & set(POINT_KINDS):
        raise ValueError(f"--point chooses the query of --kind heads (or rollout), not of {kinds}; add --kind heads")


def draw_tokens(
    model: nn.Module, name: str, kinds: list[str], images: Sequence[str | Path], out_dir: Path, *,
    layer: int | None = None, img_size: int | Sequence[int] | None = None, head_fusion: str = "mean",
    max_images: int | None = 128, batch_size: int = 32, device: str = "cpu", dpi: int = 100,
    point: tuple[int, int] | None = None, **unused: object,
) -> list[Path]:  # fmt: skip
    """The paper's pictures of a ViT (global attention over a token sequence): rollout, per-head attention of the
    readout (or, for one layer, of the patch under ``point``), mean attention distance, position-embedding
    similarity, filters."""
    paths = find_images(images, max_images)
    wanting = [k for k in kinds if k in NEEDS_IMAGES]
    if wanting and not paths:
        raise ValueError(f"kind(s) {wanting} need at least one image; pass image files or folders after the checkpoint")
    cfg = model.cfg
    size = image_size_pair(img_size, cfg.img_size)
    model = prepare_model(model.to(device), size)
    index = resolve_layer(layer, cfg.depth)
    written: list[Path] = []

    raw = load_images(paths, cfg, size) if wanting else None  # (B, 3, H, W) uint8
    inputs = to_input(raw, cfg) if wanting else None  # (B, 3, H, W) float
    pixels = to_display(raw) if wanting else None  # (B, H, W, 3) uint8
    if "rollout" in kinds or "heads" in kinds:
        stop = cfg.depth if index is None else index + 1
        query = None if point is None else point_token(point, size, cfg.patch_stride, model.num_prefix_tokens)
        heat, heads = readout_maps(model, inputs, stop, head_fusion, batch_size, query)
        readout = "class token" if cfg.global_pool == "token" else "mean of patch tokens"
        if query is not None:
            readout = f"patch at (y={point[0]}, x={point[1]}) px"
    if "rollout" in kinds:
        title = f"{name}: attention rollout to the {readout}, layers 1-{stop}"
        written += _rollout_pages(pixels, heat, paths, out_dir, title, dpi)
    if "heads" in kinds and query is not None:
        title = f"{name}: attention of the {readout} per head"
        last = cfg.depth - 1 if index is None else index
        written += _point_figures(pixels, heads, last, point, cfg.patch_stride, paths, out_dir, title, dpi)
    elif "heads" in kinds:
        layers = list(range(cfg.depth)) if index is None else [index]
        title = f"{name}: attention of the {readout} per head"
        written += _head_figures(pixels, heads[layers], layers, paths, out_dir, title, dpi)
    if "distance" in kinds:
        dist = model_attention_distance(model, inputs, batch_size)  # (L, heads)
        title = f"{name}: mean attention distance, {len(paths)} images of {size[0]}x{size[1]} px"
        uniform = patch_distances(token_grid(model, inputs), cfg.patch_stride).mean().item()
        file = out_dir / "distance.png"
        written.append(plot_attention_distance(dist, file, title=title, uniform=uniform, dpi=dpi))

    if "posembed" in kinds:
        title = f"{name}: {position_picture_title(model)}"
        written.append(draw_position_picture(model, out_dir / "posembed.png", title=title, dpi=dpi))

    if "filters" in kinds:
        comps, ratio = filter_components(model)
        title = f"{name}: RGB embedding filters (first {len(comps)} principal components)"
        written.append(plot_filters(comps, out_dir / "filters.png", ratio, title=title, dpi=dpi))
    return written


# A family's viewer (Family.viewer) -> the function that draws its kinds.
VIEWERS = {"tokens": draw_tokens, "windows": draw_swin, "reconstruction": draw_reconstructions}
