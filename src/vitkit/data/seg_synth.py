"""``seg_synth``: procedural scenes in the ADE20K layout, the stand-in for ADE20K on a machine that cannot download it.

It exercises what makes scene parsing hard, at a size a CPU can train on: four kinds of background ("stuff") and
six kinds of object ("things"), each told apart by texture and shape, never by colour, since every class draws its
colours from the same distribution. Objects overlap (later ones occlude earlier ones) and range from a few pixels
(well under a 16 x 16 patch) to a large part of the image; rings and wires are 1-4 px thin structures.

    stuff:  floor (checkerboard), wall (bricks), water (smooth waves), grass (streaky noise)
    things: ball (shaded disc), cookie (dotted disc), crate (striped box), star (five points), ring, wire

Label 0 is 'unlabelled' (some images hold a smudge of clutter labelled 0), so ADE20K's reduce_zero_label applies
unchanged: ids 1..10 become classes 0..9. Images are JPEGs and masks 8-bit PNGs, as in ADEChallengeData2016;
``seg_synth.json`` beside them holds the class names, palette, seed and sizes. Every image comes from its own
seeded generator, so a set is the same bytes for the same seed.
"""

from __future__ import annotations

import colorsys
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vitkit.utils.progress import Progress

STUFF = ["floor", "wall", "water", "grass"]
THINGS = ["ball", "cookie", "crate", "star", "ring", "wire"]
CLASSES = STUFF + THINGS  # mask id = index + 1; 0 = unlabelled
PALETTE = [
    (128, 64, 128), (180, 90, 40), (40, 120, 230), (60, 200, 60), (230, 40, 40),
    (240, 200, 40), (150, 80, 220), (250, 130, 200), (40, 220, 220), (255, 255, 255),
]  # fmt: skip
DEFAULT_TRAIN, DEFAULT_VAL, DEFAULT_SIZE = 2000, 500, 256
SPLITS = {"training": "train", "validation": "val"}
JPEG_QUALITY = 90


# ------------------------------------------------------------------------------------------------ helpers
def _colour(rng: np.random.Generator) -> np.ndarray:
    """One RGB colour in [0, 1] from the distribution every class shares."""
    return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.95)), np.float32)


def _partner(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """A second colour for two-tone textures: another hue, or the same hue much lighter or darker."""
    if rng.uniform() < 0.5:
        return _colour(rng)
    return np.clip(base * rng.choice([0.45, 1.7]), 0, 1).astype(np.float32)


def _rotate(xs: np.ndarray, ys: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return xs * c + ys * s, -xs * s + ys * c


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel blend of two colours: (..., ) weights -> (..., 3)."""
    return a + (b - a) * t[..., None]


# --------------------------------------------------------------------------------- stuff (whole canvas)
def _floor(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, s: float) -> np.ndarray:
    a = _colour(rng)
    u, v = _rotate(xs, ys, rng.uniform(-0.6, 0.6))
    tile = rng.uniform(6, 18) * s
    return _mix(a, _partner(rng, a), ((np.floor(u / tile) + np.floor(v / tile)) % 2).astype(np.float32))


def _wall(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, s: float) -> np.ndarray:
    brick = _colour(rng)
    mortar = np.clip(brick * rng.choice([0.4, 1.8]), 0, 1).astype(np.float32)
    bh = rng.uniform(7, 16) * s
    bw = bh * rng.uniform(1.8, 3.0)
    u, v = _rotate(xs, ys, rng.uniform(-0.15, 0.15))
    row = np.floor(v / bh)
    shifted = u + (row % 2) * bw / 2
    col = np.floor(shifted / bw)
    jitter = 1 + 0.12 * np.sin(row * 12.9898 + col * 78.233) * np.cos(col * 3.7 + row * 1.3)  # per-brick shade
    line = max(1.0, 0.15 * bh)
    is_mortar = ((v - row * bh) < line) | ((shifted - col * bw) < line)
    return np.where(is_mortar[..., None], mortar, np.clip(brick * jitter[..., None], 0, 1)).astype(np.float32)


def _water(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, s: float) -> np.ndarray:
    a = _colour(rng)
    b = np.clip(a * rng.uniform(1.25, 1.5) + rng.uniform(-0.08, 0.08, 3), 0, 1).astype(np.float32)
    u, v = _rotate(xs, ys, rng.uniform(-0.5, 0.5))
    period = rng.uniform(14, 40) * s
    bend = np.sin(2 * np.pi * u / (period * rng.uniform(2, 4)) + rng.uniform(0, 6.3))
    return _mix(a, b, (0.5 + 0.5 * np.sin(2 * np.pi * (v / period + 0.35 * bend))).astype(np.float32))


def _grass(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, s: float) -> np.ndarray:
    a = _colour(rng)
    h, w = np.broadcast_shapes(xs.shape, ys.shape)
    run = max(2, int(round(5 * s)))  # vertical streaks: a running sum along y
    noise = rng.standard_normal((h + run, w)).astype(np.float32)
    csum = np.cumsum(noise, axis=0)
    streaks = (csum[run:] - csum[:-run])[:h] / np.sqrt(run)
    grain = 0.3 * streaks + 0.1 * rng.standard_normal((h, w)).astype(np.float32)
    return np.clip(a * (1 + grain[..., None]), 0, 1).astype(np.float32)


STUFF_TEXTURES = [_floor, _wall, _water, _grass]


def _regions(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, h: int, w: int) -> np.ndarray:
    """1-3 background regions split by wavy boundaries: a horizon, then a vertical split below it."""
    n = int(rng.choice([1, 2, 3], p=[0.2, 0.45, 0.35]))
    region = np.zeros((h, w), np.uint8)
    if n >= 2:
        wave = rng.uniform(0, 0.08 * h) * np.sin(2 * np.pi * xs / rng.uniform(0.3, 1.5) / w + rng.uniform(0, 6.3))
        region[ys + 0 * xs > h * rng.uniform(0.25, 0.75) + wave] = 1
    if n == 3:
        wave = rng.uniform(0, 0.08 * w) * np.sin(2 * np.pi * ys / rng.uniform(0.3, 1.5) / h + rng.uniform(0, 6.3))
        region[(region == 1) & (xs + 0 * ys > w * rng.uniform(0.25, 0.75) + wave)] = 2
    return region


# ------------------------------------------------------------------------------------ things (in a window)
@dataclass
class _Window:
    """The pixels around one object: slices into the canvas and pixel-centre offsets from its centre."""

    rows: slice
    cols: slice
    xs: np.ndarray  # (1, w)
    ys: np.ndarray  # (h, 1)


def _window(cx: float, cy: float, extent: float, h: int, w: int) -> _Window | None:
    y0, y1 = max(int(cy - extent) - 1, 0), min(int(cy + extent) + 2, h)
    x0, x1 = max(int(cx - extent) - 1, 0), min(int(cx + extent) + 2, w)
    if y0 >= y1 or x0 >= x1:
        return None
    xs = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    return _Window(slice(y0, y1), slice(x0, x1), xs, ys)


def _polar(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.hypot(xs, ys), np.arctan2(ys, xs)


def _ball(rng: np.random.Generator, r: float, win: _Window) -> tuple[np.ndarray, np.ndarray]:
    rho = np.hypot(win.xs, win.ys)
    lx, ly = r * rng.uniform(-0.45, -0.15), r * rng.uniform(-0.45, -0.15)  # the light comes from the upper left
    lit = np.sqrt(np.clip(1 - ((win.xs - lx) ** 2 + (win.ys - ly) ** 2) / (1.6 * r) ** 2, 0, 1))
    return rho - r, _colour(rng) * (0.25 + 0.85 * lit)[..., None]


def _cookie(rng: np.random.Generator, r: float, win: _Window) -> tuple[np.ndarray, np.ndarray]:
    a = _colour(rng)
    gap = rng.uniform(4, 8) * max(1.0, r / 40)
    u, v = _rotate(win.xs, win.ys, rng.uniform(0, np.pi))
    du = (u % gap) - gap / 2
    dv = ((v + (np.floor(u / gap) % 2) * gap / 2) % gap) - gap / 2  # dots on a staggered grid
    dots = (du**2 + dv**2 < (0.3 * gap) ** 2).astype(np.float32)
    return np.hypot(win.xs, win.ys) - r, _mix(a, _partner(rng, a), dots)


def _crate(rng: np.random.Generator, r: float, win: _Window) -> tuple[np.ndarray, np.ndarray]:
    a = _colour(rng)
    aspect = rng.uniform(0.5, 1.0)
    hw, hh = r * 0.85, r * 0.85 * aspect
    u, v = _rotate(win.xs, win.ys, rng.uniform(0, np.pi))
    qx, qy = np.abs(u) - hw, np.abs(v) - hh
    dist = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    period = rng.uniform(3, 7) * max(1.0, r / 50)
    stripes = (np.floor((u if rng.uniform() < 0.5 else v) / period) % 2).astype(np.float32)
    return dist, _mix(a, _partner(rng, a), stripes)


def _star(rng: np.random.Generator, r: float, win: _Window) -> tuple[np.ndarray, np.ndarray]:
    # Five points: fold every pixel into half a sector, then the signed distance to the edge from tip to notch.
    rho, theta = _polar(win.xs, win.ys)
    seg = 2 * np.pi / 5
    phi = (theta - rng.uniform(0, seg)) % seg
    phi = np.minimum(phi, seg - phi)
    tip, notch = np.array([r, 0.0]), rng.uniform(0.38, 0.5) * r * np.array([np.cos(seg / 2), np.sin(seg / 2)])
    normal = np.array([notch[1] - tip[1], tip[0] - notch[0]]) / np.hypot(*(notch - tip))  # pointing outwards
    dist = (rho * np.cos(phi) - tip[0]) * normal[0] + (rho * np.sin(phi) - tip[1]) * normal[1]
    shade = 1 + 0.25 * (win.xs + win.ys) / max(r, 1)  # a flat face lit from one side
    return dist.astype(np.float32), np.clip(_colour(rng) * shade[..., None], 0, 1)


def _ring(rng: np.random.Generator, r: float, win: _Window) -> tuple[np.ndarray, np.ndarray]:
    width = rng.uniform(1.2, 4.0)
    return np.abs(np.hypot(win.xs, win.ys) - r) - width / 2, _colour(rng)


def _wire(rng: np.random.Generator, r: float, win: _Window) -> tuple[np.ndarray, np.ndarray]:
    # A quadratic Bezier curve through the window, 1-3 px wide, sampled as 16 segments.
    ends = rng.uniform(-r, r, size=(3, 2)).astype(np.float32)
    t = np.linspace(0, 1, 17, dtype=np.float32)[:, None]
    pts = (1 - t) ** 2 * ends[0] + 2 * (1 - t) * t * ends[1] * 1.5 + t**2 * ends[2]
    dist = np.full(np.broadcast_shapes(win.xs.shape, win.ys.shape), np.inf, np.float32)
    for (ax, ay), (bx, by) in zip(pts[:-1], pts[1:]):
        dx, dy = bx - ax, by - ay
        k = np.clip(((win.xs - ax) * dx + (win.ys - ay) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
        dist = np.minimum(dist, np.hypot(win.xs - ax - k * dx, win.ys - ay - k * dy))
    return dist - rng.uniform(0.5, 1.5), _colour(rng)


def _clutter(rng: np.random.Generator, r: float, win: _Window) -> tuple[np.ndarray, np.ndarray]:
    """An unlabelled smudge: an irregular blob of blotchy colour (label 0, ignored)."""
    rho, theta = _polar(win.xs, win.ys)
    edge = r * (1 + sum(rng.uniform(0, 0.2) * np.sin(k * theta + rng.uniform(0, 6.3)) for k in (2, 3, 5)))
    h, w = rho.shape
    coarse = Image.fromarray(rng.uniform(0, 1, (4, 4)).astype(np.float32), "F").resize((w, h), Image.BICUBIC)
    blotch = np.clip(np.asarray(coarse), 0, 1)
    return rho - edge, _mix(_colour(rng), _colour(rng), blotch)


THING_SHAPES = [_ball, _cookie, _crate, _star, _ring, _wire]


def _paint(img: np.ndarray, mask: np.ndarray, win: _Window, dist: np.ndarray, tex: np.ndarray, label: int) -> None:
    """Composite ``tex`` where the signed distance ``dist`` (px, < 0 inside) says, antialiased over one pixel;
    the mask takes ``label`` at pixels whose centre is inside."""
    alpha = np.clip(0.5 - dist, 0, 1)[..., None]
    view = img[win.rows, win.cols]
    view += (tex - view) * alpha
    mask[win.rows, win.cols][dist < 0] = label


# ---------------------------------------------------------------------------------------------- scenes
def render_scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: float RGB (H, W, 3) in [0, 1] and uint8 mask ids (H, W), 0 unlabelled, k = CLASSES[k - 1]."""
    s = min(width, height) / 256  # textures scale with the image
    xs = np.arange(width, dtype=np.float32)[None, :] + 0.5
    ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
    region = _regions(rng, xs, ys, height, width)
    img = np.empty((height, width, 3), np.float32)
    mask = np.empty((height, width), np.uint8)
    kinds = rng.permutation(len(STUFF))[: int(region.max()) + 1]
    for r, kind in enumerate(kinds):
        inside = region == r
        np.copyto(img, STUFF_TEXTURES[kind](rng, xs, ys, s), where=inside[..., None])
        mask[inside] = kind + 1
    short = min(width, height)
    shapes = [(int(rng.integers(len(THINGS))), None) for _ in range(int(rng.integers(4, 13)))]
    if rng.uniform() < 0.3:
        shapes.insert(int(rng.integers(len(shapes) + 1)), (-1, _clutter))
    for kind, draw in shapes:
        draw = draw or THING_SHAPES[kind]
        r = float(np.exp(rng.uniform(np.log(2.5), np.log(0.4 * short))))  # a few px to a large part of the image
        if draw is _wire:
            r = max(r, 0.15 * short)
        elif draw is _clutter:
            r = min(r, 0.12 * short)  # a smudge, not a background region
        cx, cy = rng.uniform(-0.1, 1.1) * width, rng.uniform(-0.1, 1.1) * height
        win = _window(cx, cy, r * (1.6 if draw in (_wire, _clutter) else 1.0) + 3, height, width)
        if win is not None:
            dist, tex = draw(rng, r, win)
            _paint(img, mask, win, dist, tex, kind + len(STUFF) + 1 if kind >= 0 else 0)
    tilt = rng.uniform(-1, 1, size=2)  # light falling off across the image
    light = 1 + rng.uniform(0, 0.4) * ((xs / width - 0.5) * tilt[0] + (ys / height - 0.5) * tilt[1])
    img = img * light[..., None] + rng.uniform(0.005, 0.02) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0, 1), mask


def scene_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(width, height): ``size`` on the short side, the long side up to 4/3 of it, mostly landscape (as ADE20K)."""
    long_side = int(round(size * rng.uniform(1.0, 4 / 3)))
    return (long_side, size) if rng.uniform() < 0.7 else (size, long_side)


@dataclass
class SegSynthReport:
    out: Path
    counts: dict[str, int]
    seconds: float

    def format(self) -> str:
        total = sum(self.counts.values())
        rate = total / max(self.seconds, 1e-9)
        split_counts = ", ".join(f"{split} {n}" for split, n in self.counts.items())
        return (
            f"wrote seg_synth ({split_counts}; {len(CLASSES)} classes: {', '.join(CLASSES)}) to {self.out} "
            f"in {self.seconds:.1f} s ({rate:.0f} images/s); a procedural stand-in for ADE20K"
        )


def make_seg(
    out: str | os.PathLike, train: int = DEFAULT_TRAIN, val: int = DEFAULT_VAL, size: int = DEFAULT_SIZE, seed: int = 0
) -> SegSynthReport:
    """Write ``train`` + ``val`` scenes of ``size`` px (short side) to ``out`` in the ADE20K layout, with
    ``out/seg_synth.json`` (written last, so a folder holding it is complete). Deterministic given ``seed``."""
    if min(train, val) < 0 or size < 16:
        raise ValueError(f"make_seg needs train, val >= 0 and size >= 16 px, got train={train} val={val} size={size}")
    out = Path(out)
    counts = {"training": train, "validation": val}
    start = time.perf_counter()
    with Progress(train + val, "make-seg", unit="img") as bar:
        for split_id, (folder, count) in enumerate(counts.items()):
            (out / "images" / folder).mkdir(parents=True, exist_ok=True)
            (out / "annotations" / folder).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng([seed, split_id, i])
                img, mask = render_scene(rng, *scene_size(rng, size))
                stem = f"synth_{SPLITS[folder]}_{i + 1:08d}"
                pixels = Image.fromarray((img * 255 + 0.5).astype(np.uint8), "RGB")
                pixels.save(out / "images" / folder / f"{stem}.jpg", quality=JPEG_QUALITY)
                Image.fromarray(mask, "L").save(out / "annotations" / folder / f"{stem}.png")
                bar.update(1)
    meta = {
        "name": "seg_synth",
        "description": "procedural stand-in for ADE20K (vitkit.data.seg_synth); mask 0 = unlabelled",
        "classes": CLASSES,
        "palette": [list(c) for c in PALETTE],
        "reduce_zero_label": True,
        "seed": seed,
        "size": size,
        "train": train,
        "val": val,
    }
    (out / "seg_synth.json").write_text(json.dumps(meta, indent=1) + "\n")
    return SegSynthReport(out, {SPLITS[k]: v for k, v in counts.items()}, time.perf_counter() - start)
