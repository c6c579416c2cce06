"""``vitkit data inspect``: what a data set holds and what the training pipeline makes of it.

Class counts per split, an image-size histogram, and two PNG grids: samples as stored, with their labels, and
the same samples after the training augmentation (crop, flip, RandAugment, erasing, mixing) with their targets.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from vitkit.data.augment import BatchAugment
from vitkit.data.config import DataConfig
from vitkit.data.datasets import ImageDataset, resolve_source
from vitkit.data.decode import decode, oriented_size
from vitkit.data.loader import sample_seed
from vitkit.data.named import NAMED, resolve_named
from vitkit.data.sample_transforms import TrainTransform
from vitkit.data.sources import SPLIT_DIRS, Source, is_cifar_dir, verify
from vitkit.utils.files import atomic_path

_SIZE_BINS = (16, 32, 64, 128, 256, 512, 1024, 2048)
_LINE = 12


@dataclass
class InspectReport:
    name: str
    counts: dict[str, dict[str, int]]  # split -> class -> images
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    skipped: int = 0
    written: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A plain-text report: counts per class and split, then the size histogram."""
        splits = list(self.counts)
        classes = sorted({c for per in self.counts.values() for c in per}, key=lambda c: c.lower())
        width = max([len(c) for c in classes] + [5])
        lines = [f"data set {self.name}", "", f"{'class':<{width}}" + "".join(f"  {s:>8}" for s in splits)]
        for c in classes:
            lines.append(f"{c:<{width}}" + "".join(f"  {self.counts[s].get(c, 0):>8,}" for s in splits))
        lines.append(f"{'total':<{width}}" + "".join(f"  {sum(self.counts[s].values()):>8,}" for s in splits))
        if self.skipped:
            lines.append(f"({self.skipped} unreadable file(s) skipped)")
        lines += ["", "image sizes (width x height):", *size_histogram(self.sizes)]
        if self.written:
            lines += ["", *(f"wrote {p}" for p in self.written)]
        return "\n".join(lines)


def size_histogram(sizes: Counter, bar: int = 40) -> list[str]:
    """Exact sizes when there are few, else counts by shorter side in power-of-two bins."""
    if not sizes:
        return ["  (no sizes)"]
    total = sum(sizes.values())
    if len(sizes) <= 10:
        rows = [(f"{w}x{h}", n) for (w, h), n in sizes.most_common()]
    else:
        binned: Counter = Counter()
        for (w, h), n in sizes.items():
            short = min(w, h)
            lo = max([b for b in _SIZE_BINS if b <= short], default=0)
            binned[lo] += n
        edges = [0, *_SIZE_BINS]
        rows = []
        for lo in sorted(binned):
            hi = next((e for e in edges if e > lo), None)
            label = f"short side {lo}-{hi - 1}" if hi else f"short side >= {lo}"
            rows.append((label, binned[lo]))
    label_w = max(len(r[0]) for r in rows)
    peak = max(n for _, n in rows)
    return [
        f"  {name:<{label_w}}  {n:>8,}  {'#' * max(1, round(bar * n / peak))}  {100 * n / total:.1f}%"
        for name, n in rows
    ]


def _splits_of(root: Path) -> list[str]:
    """The split folders (or CSVs) present under ``root``; ['all'] for a single folder or file."""
    if is_cifar_dir(root):
        return ["train", "test"]
    if root.is_file():
        return ["all"]
    names = dict.fromkeys(n for ns in SPLIT_DIRS.values() for n in ns)
    found = [n for n in names if (root / n).is_dir() or (root / f"{n}.csv").is_file()]
    return found or ["all"]


def _root_of(cfg: DataConfig) -> Path:
    path = Path(cfg.dataset).expanduser()
    if not path.exists() and cfg.dataset.lower() in NAMED:
        return resolve_named(cfg.dataset, cfg.data_root, cfg.download)
    return path


def _tile(img: Image.Image, tile: int) -> Image.Image:
    scale = tile / max(img.size)
    resample = Image.NEAREST if scale >= 2 else Image.BICUBIC  # keep tiny images' pixels visible
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, resample)


def draw_grid(images: list[Image.Image], captions: list[str], path: str | os.PathLike, tile: int = 96) -> None:
    """Tiles with a caption (one or more lines) under each, in a near-square grid; written atomically as PNG."""
    cols = max(1, int(len(images) ** 0.5 + 0.999))
    rows = -(-len(images) // cols)
    caption_h = _LINE * max([c.count("\n") + 1 for c in captions] + [1])
    sheet = Image.new("RGB", (cols * (tile + 4) + 4, rows * (tile + caption_h + 6) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k, (img, text) in enumerate(zip(images, captions, strict=True)):
        r, c = divmod(k, cols)
        x0, y0 = 4 + c * (tile + 4), 4 + r * (tile + caption_h + 6)
        small = _tile(img, tile)
        sheet.paste(small, (x0 + (tile - small.width) // 2, y0 + (tile - small.height) // 2))
        for n, line in enumerate(text.split("\n")):
            while line and draw.textlength(line, font=font) > tile:
                line = line[:-1]
            draw.text((x0, y0 + tile + 2 + n * _LINE), line, fill=(0, 0, 0), font=font)
    with atomic_path(path, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")


def _caption(target: torch.Tensor, classes: list[str]) -> str:
    if target.ndim == 0:
        return classes[int(target)]
    top = torch.topk(target, min(2, len(classes)))
    pairs = zip(top.values.tolist(), top.indices.tolist(), strict=True)
    return "\n".join(f"{v:.2f} {classes[i]}" for v, i in pairs if v > 0.05)


# What the augmented grid shows unless told otherwise: a typical ViT/DeiT training pipeline.
DEFAULT_AUGMENT = {"randaugment": "rand-m9-n2", "random_erasing": 0.25, "mixup_alpha": 0.8, "cutmix_alpha": 1.0}


def inspect_dataset(
    dataset: str,
    out_dir: str | os.PathLike | None = None,
    *,
    data_root: str | None = None,
    download: bool = True,
    img_size: int | None = None,
    augment: dict | None = None,
    cfg: DataConfig | None = None,
    num_samples: int = 32,
    seed: int = 0,
) -> InspectReport:
    """Count, measure and draw ``dataset`` (a path or a named data set); PNG grids go to ``out_dir``.

    The augmented grid uses ``cfg`` when given, else :data:`DEFAULT_AUGMENT` updated with ``augment`` (DataConfig
    fields) at ``img_size`` (default: the images' own size, at most 224).
    """
    base = DataConfig(dataset=dataset, data_root=data_root, download=download)
    root = _root_of(base)
    base = base.replace(dataset=str(root))
    counts: dict[str, dict[str, int]] = {}
    sizes: Counter = Counter()
    skipped = 0
    first: Source | None = None
    for split in _splits_of(root):
        source = resolve_source(base, "train" if split == "all" else split)
        checked = verify(source, "header", workers=2)
        skipped += len(source) - len(checked)
        counts[split] = dict(Counter(checked.classes[t] for t in checked.targets))
        sizes.update(checked.sizes or [])
        first = first or checked
    report = InspectReport(name=dataset, counts=counts, sizes=sizes, skipped=skipped)
    if out_dir is None or first is None:
        return report
    if cfg is None:
        native = max(sizes.most_common(1)[0][0]) if sizes else 224
        settings = {**DEFAULT_AUGMENT, **(augment or {})}
        cfg = base.replace(img_size=img_size or min(224, native), crop_pct=1.0, **settings)
    out_dir = Path(out_dir)
    picks = sorted(random.Random(seed).sample(range(len(first)), min(num_samples, len(first))))
    names = [first.classes[first.targets[i]] for i in picks]
    draw_grid([_thumbnail(first, i, tile=96) for i in picks], names, out_dir / "samples.png")
    train = ImageDataset(first, TrainTransform(cfg))
    batch = torch.stack([train[(i, sample_seed(seed, 0, i))][0] for i in picks])
    labels = torch.tensor([first.targets[i] for i in picks])
    x, targets = BatchAugment(cfg, len(first.classes), train=True, seed=seed)(batch, labels)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    pixels = ((x * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    captions = [_caption(t, first.classes) for t in targets]
    draw_grid([_to_pil(p) for p in pixels], captions, out_dir / "augmented.png")
    report.written = [str(out_dir / "samples.png"), str(out_dir / "augmented.png")]
    return report


def _thumbnail(source: Source, index: int, tile: int) -> Image.Image:
    with source.open(index) as img:
        w, h = oriented_size(img)
        k = min(1.0, tile / max(w, h))
        return decode(img, need=(w * k, h * k))


def _to_pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(x.permute(1, 2, 0).contiguous().numpy())
