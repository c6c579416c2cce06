"""Live/spoof data sets: listing them with their attack types, and building the stand-in set from real photos.

Layout (what ``vitkit eval --antispoof`` and training read; also the layout to convert OULU-NPU, SiW or
CASIA-FASD frames into)::

    ROOT/<split>/live/**/<image>                     bona fide presentations
    ROOT/<split>/spoof/<attack_type>/**/<image>      attacks, one folder per attack type (print, replay, ...)

or a CSV with columns ``path,label,attack_type[,split]`` (label ``live`` or ``spoof``; paths relative to the CSV),
given directly or as ``ROOT/<split>.csv``. As an image folder the split has the classes ``live`` and ``spoof``,
so training reads it like any other folder.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitkit.data.decode import is_image_file
from vitkit.data.sources import Source
from vitkit.utils.progress import Progress

CLASSES = ["live", "spoof"]
SPLITS = {"train": 0.7, "dev": 0.15, "test": 0.15}


def _images(folder: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if is_image_file(f) and not f.startswith(".")]
    return found


def _from_folder(folder: Path) -> tuple[list[str], list[str]]:
    """(paths, attack types with 'live' for bona fide) of ``folder/live`` and ``folder/spoof/<type>``."""
    paths = _images(folder / "live")
    types = ["live"] * len(paths)
    spoof = folder / "spoof"
    if spoof.is_dir():
        for entry in sorted(os.scandir(spoof), key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith("."):
                found = _images(Path(entry.path))
                paths += found
                types += [entry.name] * len(found)
            elif entry.is_file() and is_image_file(entry.name):
                paths.append(entry.path)
                types.append("spoof")
    return paths, types


def _from_csv(path: Path, split: str | None) -> tuple[list[str], list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"path", "label"}
    if not rows or not need <= set(rows[0]):
        raise ValueError(f"{path}: expected a header with columns path,label,attack_type[,split]")
    if split is not None and "split" in rows[0]:
        rows = [r for r in rows if r["split"] == split]
    paths, types = [], []
    for r in rows:
        label = r["label"].strip().lower()
        if label not in ("live", "spoof", "0", "1"):
            raise ValueError(f"{path}: label {r['label']!r} is neither live nor spoof; use live/spoof (or 0/1)")
        live = label in ("live", "0")
        paths.append(r["path"] if os.path.isabs(r["path"]) else str(path.parent / r["path"]))
        types.append("live" if live else (r.get("attack_type") or "spoof").strip())
    return paths, types


def spoof_listing(root: str | os.PathLike, split: str) -> tuple[Source, list[str]]:
    """(image source with classes live/spoof, attack type per sample) for ``split`` of a live/spoof set."""
    root = Path(root)
    if root.suffix.lower() == ".csv":
        paths, types = _from_csv(root, split)
        where = f"{root} (split {split})"
    elif (root / f"{split}.csv").is_file():
        paths, types = _from_csv(root / f"{split}.csv", None)
        where = str(root / f"{split}.csv")
    else:
        folder = root / split if (root / split).is_dir() else root
        others = sorted(e.name for e in os.scandir(root) if e.is_dir() and (Path(e.path) / "live").is_dir())
        if folder == root and others:
            raise FileNotFoundError(
                f"{root} has no {split!r} split (it has {', '.join(others)}); choose one of those (--split / "
                f"--dev-split) or add {root / split}/live and {root / split}/spoof/<attack_type>"
            )
        if not (folder / "live").is_dir() and not (folder / "spoof").is_dir():
            raise FileNotFoundError(
                f"{folder} has no live/ or spoof/ folder; lay a live/spoof set out as {root}/<split>/live/... and "
                f"{root}/<split>/spoof/<attack_type>/... (see docs/antispoofing.md)"
            )
        paths, types = _from_folder(folder)
        where = str(folder)
    for kind, missing in (("spoof", all(t == "live" for t in types)), ("live", all(t != "live" for t in types))):
        if missing:
            hint = "spoof/<attack_type>/" if kind == "spoof" else "live/"
            raise ValueError(f"{where} holds no {kind} images; add them under {hint} (both classes are needed)")
    targets = [0 if t == "live" else 1 for t in types]
    return Source(name=where, classes=list(CLASSES), targets=targets, paths=paths, files=paths), types


# ---------------------------------------------------------------------------------------------- make-spoof
@dataclass
class SpoofSetReport:
    out: Path
    counts: dict[str, dict[str, int]]  # split -> kind -> images

    def format(self) -> str:
        lines = [f"wrote the stand-in live/spoof set to {self.out} (a simulation, not real attacks)"]
        for split, kinds in self.counts.items():
            lines.append(f"  {split:<5} " + "  ".join(f"{k} {n}" for k, n in kinds.items()))
        return "\n".join(lines)


def make_spoof(
    src: str | os.PathLike, out: str | os.PathLike, num_photos: int | None = 6000, size: int = 32, seed: int = 0
) -> SpoofSetReport:
    """Build ``out/{train,dev,test}/live|spoof/{print,replay}`` from the photos under ``src``.

    Each source photo gives one live image and one attack (print for half the photos, replay for the other
    half) and lands in exactly one split (70/15/15), so no photo is seen in two splits. Everything is
    deterministic given ``seed``. ``out/manifest.csv`` lists path, label, attack type, split and source photo.
    """
    from PIL import Image

    from vitkit.data.spoof_render import render

    src, out = Path(src), Path(out)
    photos = _images(src)
    if not photos:
        raise FileNotFoundError(f"no photos under {src}; pass a folder of real photos (e.g. CIFAR-10's train/)")
    order = np.random.default_rng(seed).permutation(len(photos))[: num_photos or len(photos)]
    bounds = np.cumsum([int(round(f * len(order))) for f in SPLITS.values()])
    rows: list[list[str]] = []
    counts = {s: {"live": 0, "print": 0, "replay": 0} for s in SPLITS}
    with Progress(len(order), "make-spoof", unit="photo") as bar:
        for n, index in enumerate(order):
            split = list(SPLITS)[int(np.searchsorted(bounds, n, side="right"))]
            attack = "print" if n % 2 == 0 else "replay"
            rng = np.random.default_rng([seed, int(index)])
            with Image.open(photos[index]) as photo:
                photo.load()
                for kind in ("live", attack):
                    rel = f"{split}/live/{index:06d}.png" if kind == "live" else f"{split}/spoof/{kind}/{index:06d}.png"
                    (out / rel).parent.mkdir(parents=True, exist_ok=True)
                    render(photo, kind, size, rng).save(out / rel)
                    label = "live" if kind == "live" else "spoof"
                    rows.append(
                        [rel, label, "" if kind == "live" else kind, split, os.path.relpath(photos[index], src)]
                    )
                    counts[split][kind] += 1
            bar.update(1)
    with open(out / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "attack_type", "split", "source"])
        writer.writerows(rows)
    return SpoofSetReport(out, counts)
