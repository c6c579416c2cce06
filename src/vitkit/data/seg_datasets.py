"""Semantic-segmentation data sets: image / label-map pairs in the ADE20K, Pascal VOC 2012 or a plain folder layout.

Layouts (``layout='auto'`` recognises each from its folders)::

    ade20k   ROOT/images/{training,validation}/*.jpg, ROOT/annotations/{training,validation}/*.png
             (label 0 is 'other': with reduce_zero_label 0 -> ignore, k -> k - 1; 150 classes)
    voc      ROOT/JPEGImages/*.jpg, ROOT/SegmentationClass/*.png (palette PNGs: the index is the class, 255 the
             ignored boundary), ROOT/ImageSets/Segmentation/{train,val}.txt (21 classes)
    folder   ROOT[/<split>]/images/*, ROOT[/<split>]/masks/<same stem>.png (or ROOT/images/<split>/...), classes
             from ROOT/classes.json (a list of names, or {"classes": [...], "palette": [[r, g, b], ...]})

The stand-in ``seg_synth`` is the ADE20K layout with its classes in ``seg_synth.json``. Items are
``(uint8 image (3, H, W), int64 label map (H, W))``.

What happens to bad input. Skipped, with one warning that names the files (``strict=True`` raises instead): an
image without a mask, an unreadable or truncated file, a mask whose size differs from its image. These are
accidents of single files, and the rest of the set is still worth training on. Raised, naming the file and the
fix: label ids outside the class list and colour-coded (RGB) masks, since they mean that the layout, the class
list or ``reduce_zero_label`` is wrong for every sample, and training or metrics would silently be wrong. An image
smaller than the training crop is no error: it is padded.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vitkit.data.datasets import _unpack, sample_rng
from vitkit.data.decode import DECODE_ERRORS, check_file, decode, is_image_file
from vitkit.data.named import data_roots
from vitkit.data.passes import pass_loader
from vitkit.data.seg_config import SegDataConfig
from vitkit.data.seg_transforms import SegEvalTransform, SegTrainTransform
from vitkit.data.sources import SPLIT_DIRS
from vitkit.utils.progress import Progress

log = logging.getLogger("vitkit.data")

Palette = list[tuple[int, int, int]]
# (RGB image, label map (H, W), the sample's RNG) -> (uint8 image (3, h, w), int64 label map): SegTrainTransform,
# SegEvalTransform, or a user's own.
PairTransform = Callable[[Image.Image, np.ndarray, random.Random], tuple[torch.Tensor, torch.Tensor]]

# mmsegmentation's ADE20KDataset: the 150 classes of the SceneParsing benchmark, and its palette (hex RGB).
ADE20K_CLASSES = (
    "wall,building,sky,floor,tree,ceiling,road,bed,windowpane,grass,cabinet,sidewalk,person,earth,door,table,"
    "mountain,plant,curtain,chair,car,water,painting,sofa,shelf,house,sea,mirror,rug,field,armchair,seat,fence,desk,"
    "rock,wardrobe,lamp,bathtub,railing,cushion,base,box,column,signboard,chest of drawers,counter,sand,sink,"
    "skyscraper,fireplace,refrigerator,grandstand,path,stairs,runway,case,pool table,pillow,screen door,stairway,"
    "river,bridge,bookcase,blind,coffee table,toilet,flower,book,hill,bench,countertop,stove,palm,kitchen island,"
    "computer,swivel chair,boat,bar,arcade machine,hovel,bus,towel,light,truck,tower,chandelier,awning,streetlight,"
    "booth,television receiver,airplane,dirt track,apparel,pole,land,bannister,escalator,ottoman,bottle,buffet,"
    "poster,stage,van,ship,fountain,conveyer belt,canopy,washer,plaything,swimming pool,stool,barrel,basket,"
    "waterfall,tent,bag,minibike,cradle,oven,ball,food,step,tank,trade name,microwave,pot,animal,bicycle,lake,"
    "dishwasher,screen,blanket,sculpture,hood,sconce,vase,traffic light,tray,ashcan,fan,pier,crt screen,plate,"
    "monitor,bulletin board,shower,radiator,glass,clock,flag"
).split(",")
ADE20K_PALETTE: Palette = [
    (int(h[:2], 16), int(h[2:4], 16), int(h[4:], 16))
    for h in (
        "787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff ebff07 96053d 787846 08ff33 "
        "ff0652 8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff "
        "08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207 ff7a08 00ff14 ff0829 ff0599 0633ff "
        "eb0cff a09614 00a3ff 8c8c8c fa0a0f 14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff "
        "0bc8c8 ff5200 00fff5 003dff 00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00 008fff 33ff00 0052ff 00ff29 00ffad "
        "0a00ff adff00 00ff99 ff5c00 ff00ff ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 "
        "00ff52 000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00 08b8aa "
        "8500ff 00ff5c b800ff ff001f 00b8ff 00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3 "
        "ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00 00ccff 1400ff ffff00 0099ff 0029ff "
        "00ffcc 2900ff 29ff00 ad00ff 00f5ff 4700ff 7a00ff 00ffb8 005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff"
    ).split()
]
VOC_CLASSES = (
    "background,aeroplane,bicycle,bird,boat,bottle,bus,car,cat,chair,cow,diningtable,dog,horse,motorbike,person,"
    "pottedplant,sheep,sofa,train,tvmonitor"
).split(",")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
MASK_MODES = ("L", "P", "I", "I;16", "1")  # single-channel modes that hold class ids
META_FILES = ("seg_synth.json", "classes.json")  # class names (and palette) of a data set, first found wins
SYNTH_NAME = "seg_synth"
_MAX_LISTED = 20


def voc_colormap(num: int = 256) -> Palette:
    """The Pascal VOC colour map: the bits of the class id spread over R, G, B from the high bit down."""
    colours = []
    for i in range(num):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return colours


@dataclass
class SegSource:
    """The image/mask pairs of one split, with the class list the masks' ids refer to (after reduction)."""

    name: str
    layout: str
    classes: list[str]
    palette: Palette
    images: list[str]
    masks: list[str]
    reduce_zero_label: bool

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, keep: list[int]) -> SegSource:
        return replace(self, images=[self.images[i] for i in keep], masks=[self.masks[i] for i in keep])


# ------------------------------------------------------------------------------------------------ listing
MARKERS = {"ade20k": ("images", "annotations"), "voc": ("JPEGImages", "SegmentationClass")}
_NESTED = ("", "ADEChallengeData2016", "VOCdevkit/VOC2012", "VOC2012")  # as the archives unpack


def detect_layout(root: Path, layout: str = "auto") -> tuple[str, Path]:
    """(layout, folder holding it) for a data set root; descends into ADEChallengeData2016 and VOCdevkit/VOC2012."""
    for sub in _NESTED:
        folder = root / sub if sub else root
        for name, dirs in MARKERS.items():
            if layout in ("auto", name) and all((folder / d).is_dir() for d in dirs):
                return name, folder
    if layout != "auto":
        return layout, root
    if (root / "images").is_dir() or any((root / n / "images").is_dir() for ns in SPLIT_DIRS.values() for n in ns):
        return "folder", root
    raise FileNotFoundError(
        f"{root} is not a segmentation data set: expected images/ + annotations/ (ADE20K), JPEGImages/ + "
        "SegmentationClass/ (Pascal VOC) or images/ + masks/ (a plain folder); pass layout= or fix the folders"
    )


def _files(folder: Path) -> dict[str, str]:
    """Relative path without extension -> file, for the images or masks below ``folder`` (sorted, no hidden)."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if is_image_file(name) and not name.startswith("."):
                path = os.path.join(dirpath, name)
                found.setdefault(os.path.splitext(os.path.relpath(path, folder))[0], path)
    return found


Listing = tuple[list[str], list[str], list[str], str]  # images, masks, unusable (with why), where


def _pair_up(images: dict[str, str], masks: dict[str, str], where: str, unusable: list[str]) -> Listing:
    if not images:
        raise FileNotFoundError(f"no images in {where}; check the data set path and the split")
    keys = [k for k in images if k in masks]
    if not keys:
        raise FileNotFoundError(f"no image in {where} has a mask with the same name; check the mask folder")
    unusable = unusable + [f"{path} (no mask)" for stem, path in images.items() if stem not in masks]
    return [images[k] for k in keys], [masks[k] for k in keys], unusable, where


def _split_dir(base: Path, split: str) -> Path | None:
    return next((base / n for n in SPLIT_DIRS.get(split, (split,)) if (base / n).is_dir()), None)


def _metadata(root: Path) -> dict | None:
    for name in META_FILES:
        path = root / name
        if path.is_file():
            data = json.loads(path.read_text())
            meta = {"classes": data} if isinstance(data, list) else dict(data)
            if not isinstance(meta.get("classes"), list) or not meta["classes"]:
                raise ValueError(f"{path}: expected a list of class names, or {{'classes': [...], 'palette': [...]}}")
            return meta
    return None


def _ade20k(root: Path, split: str) -> Listing:
    image_dir, mask_dir = _split_dir(root / "images", split), _split_dir(root / "annotations", split)
    if image_dir is None or mask_dir is None:
        raise FileNotFoundError(f"{root} has no images/ and annotations/ folders for split {split!r}")
    return _pair_up(_files(image_dir), _files(mask_dir), str(image_dir), [])


def _voc(root: Path, split: str) -> Listing:
    lists = root / "ImageSets" / "Segmentation"
    names = SPLIT_DIRS.get(split, (split,))
    path = next((lists / f"{n}.txt" for n in names if (lists / f"{n}.txt").is_file()), None)
    if path is None:
        raise FileNotFoundError(f"{lists} has no split list for {split!r} (looked for {[n + '.txt' for n in names]})")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    images = {i: str(root / "JPEGImages" / f"{i}.jpg") for i in ids}
    unusable = [f"{p} (listed, not found)" for p in images.values() if not os.path.exists(p)]
    images = {i: p for i, p in images.items() if os.path.exists(p)}
    masks = {i: str(root / "SegmentationClass" / f"{i}.png") for i in ids}
    return _pair_up(images, {i: p for i, p in masks.items() if os.path.exists(p)}, str(path), unusable)


def _folder(root: Path, split: str) -> Listing:
    base = _split_dir(root, split)
    if base is not None and (base / "images").is_dir():
        image_dir, mask_dir = base / "images", base / "masks"
    elif (root / "images").is_dir() and _split_dir(root / "images", split) is not None:
        image_dir = _split_dir(root / "images", split)
        mask_dir = root / "masks" / image_dir.name  # type: ignore[union-attr]
    else:
        image_dir, mask_dir = root / "images", root / "masks"
        if split != "train":
            log.warning(f"{root} has no split folders ({split}/images or images/{split}); using all of it for {split}")
    if not mask_dir.is_dir():
        raise FileNotFoundError(f"{mask_dir} does not exist; put one mask per image there, with the image's name")
    masks = {k: p for k, p in _files(mask_dir).items() if p.lower().endswith(MASK_EXTENSIONS)}
    return _pair_up(_files(image_dir), masks, str(image_dir), [])


def _classes_from_masks(root: Path, reduce_zero_label: bool, ignore_index: int) -> list[str]:
    """Numbers as names when a plain folder has no classes.json: 0..max id found in any of its masks."""
    paths = [p for p in root.rglob("*") if p.suffix.lower() in MASK_EXTENSIONS and "masks" in p.parts]
    top = -1
    with Progress(len(paths), f"scan {root.name} masks", unit="mask") as bar:
        for path in paths:
            ids = np.unique(read_mask(path))
            ids = ids[ids != ignore_index]
            top = max(top, int(ids.max()) if ids.size else -1)
            bar.update(1)
    count = top if reduce_zero_label else top + 1
    log.info(f"{root} has no classes.json: {count} classes numbered from the masks; add one to name them")
    return [str(i) for i in range(max(count, 1))]


LISTERS = {"ade20k": _ade20k, "voc": _voc, "folder": _folder}


def list_pairs(
    root: str | os.PathLike,
    split: str,
    layout: str = "auto",
    reduce_zero_label: bool | None = None,
    ignore_index: int = 255,
    strict: bool = False,
) -> SegSource:
    """The image/mask pairs of ``split`` ('train', 'val', ...) of the data set at ``root``, with its classes.

    Images without a mask are left out with one warning (``strict=True`` raises on the first)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"segmentation data set {root} does not exist")
    found, folder = detect_layout(root, layout)
    images, masks, unusable, where = LISTERS[found](folder, split)
    if unusable and strict:
        raise ValueError(f"{unusable[0]} in {where} (strict=True; set strict=False to skip it)")
    _report(unusable, where, "image(s) without a usable mask")
    meta = _metadata(folder)
    if meta is not None:
        classes = [str(c) for c in meta["classes"]]
    elif found == "ade20k":
        classes = list(ADE20K_CLASSES)
    elif found == "voc":
        classes = list(VOC_CLASSES)
    else:
        classes = _classes_from_masks(folder, bool(reduce_zero_label), ignore_index)
    if reduce_zero_label is None:
        reduce_zero_label = bool(meta.get("reduce_zero_label", found == "ade20k") if meta else found == "ade20k")
    if meta and meta.get("palette"):
        palette = [tuple(int(v) for v in c) for c in meta["palette"]]
    elif found == "ade20k" and meta is None:
        palette = list(ADE20K_PALETTE)
    else:
        palette = voc_colormap(max(256, len(classes)))[: len(classes)]
    if len(palette) < len(classes):
        raise ValueError(f"{folder}: {len(classes)} classes but {len(palette)} palette colours; give one per class")
    return SegSource(where, found, classes, palette[: len(classes)], images, masks, reduce_zero_label)


# ------------------------------------------------------------------------------------------- verification
def _report(bad: list[str], where: str, what: str) -> None:
    if bad:
        listed = "\n  ".join(bad[:_MAX_LISTED])
        more = f"\n  ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        log.warning(f"skipped {len(bad)} {what} in {where}:\n  {listed}{more}")


class _PairCheck(Dataset):
    """One pair's header check (readable, complete, same size, single-channel mask), for worker processes."""

    def __init__(self, source: SegSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[int, str, str]:
        image, mask = self.source.images[i], self.source.masks[i]
        try:
            size = check_file(image)
        except DECODE_ERRORS as err:
            return i, "skip", f"{image} (unreadable: {err})"
        try:
            mask_size = check_file(mask)
            with Image.open(mask) as m:
                mode = m.mode
        except DECODE_ERRORS as err:
            return i, "skip", f"{mask} (unreadable: {err})"
        if mode not in MASK_MODES:
            return i, "raise", f"mask {mask} is {mode}; save class ids in one channel (an 'L' or palette 'P' PNG)"
        if mask_size != size:
            return i, "skip", f"{mask} (mask {mask_size[0]}x{mask_size[1]}, image {size[0]}x{size[1]})"
        return i, "", ""


def verify_pairs(source: SegSource, strict: bool = False, workers: int = 0) -> SegSource:
    """Drop pairs that cannot be used (header checks only: no decoding), with one warning listing them."""
    keep, bad = [], []
    workers = workers if len(source) > 2048 else 0  # starting processes costs more than a small set
    loader = pass_loader(_PairCheck(source), workers)
    with Progress(len(source), f"check {Path(source.name).name}", unit="pair") as bar:
        for batch in loader:
            for i, verdict, message in batch:
                if verdict == "raise" or (verdict and strict):
                    strict_note = " (strict=True; set strict=False to skip it)" if verdict == "skip" else ""
                    raise ValueError(message + strict_note)
                if verdict:
                    bad.append(message)
                else:
                    keep.append(i)
            bar.update(len(batch))
    _report(bad, source.name, "bad image/mask pair(s)")
    if not keep:
        raise ValueError(f"no usable image/mask pairs in {source.name}; see the warning above for why")
    return source.subset(keep) if bad else source


# ------------------------------------------------------------------------------------------------ reading
def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Class ids (H, W) int64 from a single-channel mask; a palette PNG gives its indices, not its colours."""
    with Image.open(path) as img:
        if img.mode not in MASK_MODES:
            raise ValueError(f"mask {path} is {img.mode}; save class ids in one channel (an 'L' or palette 'P' PNG)")
        return np.asarray(img).astype(np.int64)


def reduce_zero(mask: np.ndarray, ignore_index: int) -> np.ndarray:
    """ADE20K's convention: 0 ('other') becomes ignored and every other id moves down by one."""
    out = mask - 1
    out[(mask == 0) | (mask == ignore_index)] = ignore_index
    return out


class SegDataset(Dataset):
    """Decodes one pair per call and applies ``transform(image, mask, rng)`` with the sample's seeded RNG."""

    def __init__(self, source: SegSource, transform: PairTransform, ignore_index: int = 255) -> None:
        self.source = source
        self.transform = transform
        self.ignore_index = ignore_index
        self.classes = source.classes
        self.palette = source.palette

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.source)

    def load(self, i: int) -> tuple[Image.Image, np.ndarray]:
        """The RGB image and its label map (reduced, checked against the class list) of pair ``i``."""
        image_path, mask_path = self.source.images[i], self.source.masks[i]
        try:
            with Image.open(image_path) as img:
                image = decode(img)
            mask = read_mask(mask_path)
        except DECODE_ERRORS as err:
            raise ValueError(f"cannot read pair {image_path} / {mask_path} ({err}); remove or replace it") from err
        if (mask.shape[1], mask.shape[0]) != image.size:
            h, w = mask.shape
            raise ValueError(f"mask {mask_path} is {w}x{h} but its image is {image.size[0]}x{image.size[1]}")
        if self.source.reduce_zero_label:
            mask = reduce_zero(mask, self.ignore_index)
        bad = np.unique(mask[((mask < 0) | (mask >= self.num_classes)) & (mask != self.ignore_index)])
        if bad.size:
            raise ValueError(
                f"mask {mask_path} holds ids {bad[:8].tolist()} outside the {self.num_classes} classes (ignore "
                f"{self.ignore_index}, reduce_zero_label {self.source.reduce_zero_label}); fix layout, "
                "reduce_zero_label or the class list (classes.json)"
            )
        return image, mask

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, seed = _unpack(index)
        image, mask = self.load(i)
        return self.transform(image, mask, sample_rng(seed))


# ------------------------------------------------------------------------------------- named and building
def resolve_seg_synth(data_root: str | None = None) -> Path:
    """The stand-in set under the data roots; generated (once) in the first root when none holds it."""
    roots = data_roots(data_root)
    for root in roots:
        if (root / SYNTH_NAME / "seg_synth.json").is_file():
            return root / SYNTH_NAME
    from vitkit.data.seg_synth import DEFAULT_SIZE, DEFAULT_TRAIN, DEFAULT_VAL, make_seg

    target = roots[0] / SYNTH_NAME
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists but holds no seg_synth.json; remove it to let {SYNTH_NAME} be built")
    log.info(
        f"{SYNTH_NAME} not found under {', '.join(map(str, roots))}; generating it at {target} "
        f"({DEFAULT_TRAIN} train + {DEFAULT_VAL} val images of {DEFAULT_SIZE} px, once)"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{SYNTH_NAME}-"))
    try:
        make_seg(staging, train=DEFAULT_TRAIN, val=DEFAULT_VAL, size=DEFAULT_SIZE, seed=0)
        if target.exists():
            target.rmdir()  # empty (checked above); a concurrent builder's complete copy would make this fail
        os.replace(staging, target)
    except OSError:
        if not (target / "seg_synth.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_seg_root(cfg: SegDataConfig) -> Path:
    """The folder of ``cfg.dataset``: a path (also tried under ``data_root``), or the named stand-in."""
    path = Path(cfg.dataset).expanduser()
    if not path.exists() and cfg.data_root and (Path(cfg.data_root) / cfg.dataset).exists():
        path = Path(cfg.data_root) / cfg.dataset
    if path.exists():
        return path
    if cfg.dataset.lower() == SYNTH_NAME:
        return resolve_seg_synth(cfg.data_root)
    raise FileNotFoundError(
        f"segmentation data set {cfg.dataset!r} is neither a path nor {SYNTH_NAME!r}; pass an ADE20K, Pascal VOC "
        "or images/ + masks/ folder"
    )


def build_seg_dataset(cfg: SegDataConfig, split: str, augment: bool | None = None) -> SegDataset:
    """The ``split`` ('train', 'val') of ``cfg.dataset``: fixed-size training crops when ``augment`` (default:
    split == 'train'), else whole images resized for evaluation with their label maps at the stored size."""
    augment = split == "train" if augment is None else augment
    root = resolve_seg_root(cfg)
    source = list_pairs(root, split, cfg.layout, cfg.reduce_zero_label, cfg.ignore_index, strict=cfg.strict)
    source = verify_pairs(source, strict=cfg.strict, workers=cfg.num_workers)
    transform = SegTrainTransform(cfg) if augment else SegEvalTransform(cfg)
    return SegDataset(source, transform, cfg.ignore_index)
