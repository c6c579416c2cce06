"""Where the samples of a split come from: an image folder, a CSV list or CIFAR python pickles.

A :class:`Source` is the plain list of samples (file paths or decoded arrays) with their labels; datasets wrap
it with transforms. Listing never decodes; :func:`verify` checks the files and drops unreadable ones.
"""

from __future__ import annotations

import csv
import logging
import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from vitkit.data.decode import DECODE_ERRORS, IMG_EXTENSIONS, check_file, decode, is_image_file
from vitkit.data.passes import pass_loader
from vitkit.utils.progress import Progress

log = logging.getLogger("vitkit.data")

# Folder names accepted for each split, in order of preference.
SPLIT_DIRS = {
    "train": ("train", "training"),
    "val": ("val", "validation", "valid", "test"),
    "test": ("test", "val", "validation"),
}
_MAX_LISTED = 50


@dataclass
class Source:
    """The samples of one split: ``paths`` (files) or ``arrays`` (N, H, W, 3) uint8, with labels."""

    name: str
    classes: list[str]
    targets: list[int]
    paths: list[str] | None = None
    arrays: np.ndarray | None = None
    sizes: list[tuple[int, int]] | None = None  # oriented (width, height), when known
    files: list[str] = field(default_factory=list)  # files whose stats identify the data (cache keys)

    def __len__(self) -> int:
        return len(self.targets)

    def describe(self, index: int) -> str:
        return self.paths[index] if self.paths is not None else f"{self.name}[{index}]"

    def open(self, index: int) -> Image.Image:
        """The image, opened lazily (header only) so that decoding can still be planned."""
        if self.paths is not None:
            return Image.open(self.paths[index])
        return Image.fromarray(self.arrays[index])

    def subset(self, keep: list[int]) -> Source:
        pick = lambda seq: None if seq is None else [seq[i] for i in keep]
        arrays = None if self.arrays is None else self.arrays[keep]
        return replace(self, targets=pick(self.targets), paths=pick(self.paths), arrays=arrays, sizes=pick(self.sizes))


# ------------------------------------------------------------------------------------------------ listing
def image_folder(root: str | os.PathLike) -> Source:
    """``root/<class>/**/<image>``; classes sorted by name, non-image files and hidden entries ignored."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<class>/<image files>)")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes and any(is_image_file(e.name) and e.is_file() for e in os.scandir(root)):
        return unlabelled_folder(root)
    if not classes:
        raise ValueError(f"no class folders in {root}; expected {root}/<class name>/<image files>")
    paths: list[str] = []
    targets: list[int] = []
    for label, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [os.path.join(dirpath, f) for f in sorted(filenames) if is_image_file(f) and f[0] != "."]
        if not found:
            raise ValueError(
                f"class folder {root / name} holds no images (looked for {', '.join(IMG_EXTENSIONS)}); "
                "remove the folder or add images to it"
            )
        paths += found
        targets += [label] * len(found)
    return Source(name=str(root), classes=classes, targets=targets, paths=paths, files=paths)


UNLABELLED = -1  # the target of every image of an unlabelled set (self-supervised pre-training, e.g. MAE)


def unlabelled_folder(root: str | os.PathLike) -> Source:
    """``root/<image>`` with no class folders: a valid unlabelled set, ``classes == []`` and every target -1."""
    root = Path(root)
    paths = sorted(str(e.path) for e in os.scandir(root) if e.is_file() and is_image_file(e.name) and e.name[0] != ".")
    return Source(name=str(root), classes=[], targets=[UNLABELLED] * len(paths), paths=paths, files=paths)


def csv_list(path: str | os.PathLike) -> Source:
    """Rows ``path,label``; paths relative to the CSV's folder; labels are class indices or class names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV list {path} does not exist")
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    if not rows:
        raise ValueError(f"{path} lists no images; expected rows 'path,label'")
    bad = [i for i, r in enumerate(rows) if len(r) < 2]
    if bad:
        raise ValueError(f"{path}: row {bad[0] + 1} has no label; expected rows 'path,label'")
    files = [str((path.parent / r[0].strip()).resolve()) if not os.path.isabs(r[0]) else r[0].strip() for r in rows]
    labels = [r[1].strip() for r in rows]
    if all(lab.lstrip("-").isdigit() for lab in labels):
        targets = [int(lab) for lab in labels]
        if min(targets) < 0:
            raise ValueError(f"{path}: negative class index {min(targets)}")
        classes = [str(i) for i in range(max(targets) + 1)]
    else:
        classes = sorted(set(labels))
        index = {c: i for i, c in enumerate(classes)}
        targets = [index[lab] for lab in labels]
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise FileNotFoundError(f"{path}: {len(missing)} listed file(s) do not exist, e.g. {missing[:3]}")
    return Source(name=str(path), classes=classes, targets=targets, paths=files, files=[str(path), *files])


def is_cifar_dir(path: str | os.PathLike) -> bool:
    path = Path(path)
    return (path / "data_batch_1").is_file() or ((path / "train").is_file() and (path / "meta").is_file())


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        data = pickle.load(fh, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def cifar(path: str | os.PathLike, split: str) -> Source:
    """CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) in the original pickle format."""
    path = Path(path)
    train = split == "train"
    if (path / "data_batch_1").is_file():  # CIFAR-10
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        meta, label_key, names_key = path / "batches.meta", "labels", "label_names"
    else:  # CIFAR-100, fine labels
        names = ["train"] if train else ["test"]
        meta, label_key, names_key = path / "meta", "fine_labels", "fine_label_names"
    files = [path / n for n in names]
    missing = [str(f) for f in files + [meta] if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"incomplete CIFAR folder {path}: missing {missing}")
    batches = [_unpickle(f) for f in files]
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    arrays = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are R plane, G plane, B plane
    targets = [int(t) for b in batches for t in b[label_key]]
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in _unpickle(meta)[names_key]]
    return Source(
        name=f"{path}:{split}",
        classes=classes,
        targets=targets,
        arrays=np.ascontiguousarray(arrays),
        sizes=[(32, 32)] * len(targets),
        files=[str(f) for f in files],
    )


def split_source(root: str | os.PathLike, split: str) -> Source:
    """The ``split`` of a data set stored under ``root`` (folder, CSV or CIFAR pickles)."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise ValueError(f"{root} is a file but not a CSV list; pass a folder or a .csv of 'path,label' rows")
        return csv_list(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data set {root} does not exist")
    if is_cifar_dir(root):
        return cifar(root, split)
    names = SPLIT_DIRS.get(split, (split,))
    for name in names:
        if (root / f"{name}.csv").is_file():
            return csv_list(root / f"{name}.csv")
        if (root / name).is_dir():
            return image_folder(root / name)
    known = {n for ns in SPLIT_DIRS.values() for n in ns}
    present = sorted(e.name for e in os.scandir(root) if e.is_dir() and e.name in known)
    if present:
        raise FileNotFoundError(f"{root} has split folders {present} but none for split {split!r} (looked for {names})")
    if split != "train":
        log.warning(f"{root} has no split folders (train/, val/, test/); using all of it for split {split!r}")
    return image_folder(root)


# ------------------------------------------------------------------------------------------- verification
class _Check(Dataset):
    """One file's check, so that a DataLoader can spread the listing's checks over worker processes."""

    def __init__(self, paths: list[str], mode: str) -> None:
        self.paths, self.mode = paths, mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, tuple[int, int] | None, str]:
        path = self.paths[i]
        try:
            if self.mode == "full":
                with Image.open(path) as img:
                    return i, decode(img).size, ""
            return i, check_file(path), ""
        except DECODE_ERRORS as err:
            return i, None, f"{path} ({err})"


def verify(source: Source, mode: str = "header", strict: bool = False, workers: int = 0) -> Source:
    """Drop unreadable files: 'header' parses headers and end markers, 'full' decodes every image."""
    if mode == "none" or source.paths is None:
        return source
    keep, sizes, bad = [], [], []
    workers = workers if len(source) > 2048 else 0  # starting processes costs more than a small folder
    loader = pass_loader(_Check(source.paths, mode), workers)
    with Progress(len(source), f"check {Path(source.name).name}", unit="img") as bar:
        for batch in loader:
            for i, size, error in batch:
                if size is None:
                    if strict:
                        raise ValueError(f"unreadable image {error} (strict=True; set strict=False to skip)")
                    bad.append(error)
                else:
                    keep.append(i)
                    sizes.append(size)
            bar.update(len(batch))
    report_skipped(bad, source.name)
    out = source.subset(keep) if bad else source
    return replace(out, sizes=sizes)


def report_skipped(bad: list[str], where: str) -> None:
    """One warning for all skipped files: their count and (the first few of) their paths."""
    if not bad:
        return
    listed = "\n  ".join(bad[:_MAX_LISTED])
    more = f"\n  ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    log.warning(f"skipped {len(bad)} unreadable image(s) in {where}:\n  {listed}{more}")
