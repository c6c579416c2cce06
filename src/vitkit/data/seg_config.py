"""Settings of the semantic-segmentation data pipeline: one frozen dataclass, validated on construction.

The defaults are mmsegmentation's ADE20K recipe, which ViT-Adapter + UperNet (Chen et al. 2023) trains with:
random rescale of a (2048, 512) base scale by 0.5-2.0, 512 x 512 crops where no class covers more than 75 %,
flips, photometric distortion, ImageNet normalisation; evaluation at (2048, 512) with 512 / 341 sliding windows.
:meth:`SegDataConfig.preset` gives the sizes that suit the other layouts and the procedural stand-in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from vitkit.data.config import NORM_PRESETS, _pair
from vitkit.utils.typed import check_keys, strict_init

SEG_LAYOUTS = ("auto", "ade20k", "voc", "folder")
EVAL_MODES = ("whole", "slide")

# Sizes per data set (mmseg's configs for ADE20K and VOC 2012; the stand-in is 256 px on its short side).
PRESETS: dict[str, dict[str, Any]] = {
    "ade20k": {"layout": "ade20k"},
    "voc": {"layout": "voc", "eval_mode": "whole"},
    "seg_synth": {
        "dataset": "seg_synth",
        "img_size": 256,
        "scale": (1024, 256),
        "eval_scale": (1024, 256),
        "eval_crop": 256,
        "eval_stride": 171,
    },
}


@strict_init
@dataclass(frozen=True)
class SegDataConfig:
    """Where the image/label-map pairs come from, how training crops are drawn and how evaluation resizes.

    ``dataset`` is a path (an ADE20K, Pascal VOC or plain image/mask folder, see ``layout``) or the name
    ``seg_synth`` (the procedural stand-in, generated under the data roots when absent). ``scale`` is mmseg's
    ``img_scale`` with ``keep_ratio``: the image is rescaled so that its long side fits ``max(scale)`` and its
    short side ``min(scale)``, after multiplying both by a ratio drawn from ``ratio_range``. ``eval_scale`` is
    such a pair, a single short-side length, or None (evaluate at the stored size).
    """

    dataset: str = "seg_synth"
    data_root: str | None = None  # searched first; then $VITKIT_DATA, ./data, ../shared/data
    layout: str = "auto"  # 'ade20k', 'voc', 'folder', or 'auto' (from the folder's contents)
    img_size: int | tuple[int, int] = 512  # training crop (H, W); smaller images are padded
    scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75  # a crop is redrawn (up to 10 times) while one class covers more than this
    hflip: float = 0.5
    photometric: bool = True  # mmseg's PhotoMetricDistortion: brightness, contrast, saturation, hue
    mean: tuple[float, float, float] = NORM_PRESETS["imagenet"][0]
    std: tuple[float, float, float] = NORM_PRESETS["imagenet"][1]
    ignore_index: int = 255
    reduce_zero_label: bool | None = None  # None: the layout's own (True for ADE20K: label 0 is 'other')
    num_workers: int = 2
    strict: bool = False  # raise on a bad image/mask pair instead of skipping it with a warning
    eval_mode: str = "slide"
    eval_crop: int | tuple[int, int] = 512
    eval_stride: int | tuple[int, int] = 341
    eval_scale: int | tuple[int, int] | None = (2048, 512)
    eval_size_divisor: int = 1  # round the resized evaluation image up to a multiple (ViT-Adapter's configs: 32)

    def __post_init__(self) -> None:
        for name in ("img_size", "eval_crop", "eval_stride"):
            object.__setattr__(self, name, _pair(getattr(self, name), name))
        object.__setattr__(self, "scale", _pair(self.scale, "scale"))
        object.__setattr__(self, "ratio_range", _pair(self.ratio_range, "ratio_range", float))
        if self.eval_scale is not None and not isinstance(self.eval_scale, int):
            object.__setattr__(self, "eval_scale", _pair(self.eval_scale, "eval_scale"))
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"{name} needs three channel values (0..1 scale), got {value}")
            object.__setattr__(self, name, value)
        self._check()

    def _check(self) -> None:
        for name, options in (("layout", SEG_LAYOUTS), ("eval_mode", EVAL_MODES)):
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {options}, got {getattr(self, name)!r}")
        for name in ("img_size", "scale", "eval_crop", "eval_stride"):
            if min(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.eval_scale is not None and min(_pair(self.eval_scale, "eval_scale")) < 1:
            raise ValueError(f"eval_scale must be positive (or None for no resize), got {self.eval_scale}")
        if any(s > c for s, c in zip(self.eval_stride, self.eval_crop)):
            raise ValueError(
                f"eval_stride {self.eval_stride} exceeds eval_crop {self.eval_crop}, so windows would leave gaps; "
                "use a stride <= the crop (mmseg: 341 for 512)"
            )
        if not 0 < self.ratio_range[0] <= self.ratio_range[1]:
            raise ValueError(f"ratio_range must satisfy 0 < min <= max, got {self.ratio_range}")
        if not 0 < self.cat_max_ratio <= 1:
            raise ValueError(f"cat_max_ratio must lie in (0, 1] (1 = off), got {self.cat_max_ratio}")
        if not 0 <= self.hflip <= 1:
            raise ValueError(f"hflip is a probability in [0, 1], got {self.hflip}")
        if max(self.mean) > 1 or min(self.std) <= 0 or max(self.std) > 1:
            raise ValueError(
                f"mean/std are on the 0..1 scale (ImageNet: 0.485, 0.229, ...), got {self.mean}, {self.std}"
            )
        if self.ignore_index < 0:
            raise ValueError(f"ignore_index must be >= 0 (mmseg uses 255), got {self.ignore_index}")
        if self.num_workers < 0 or self.eval_size_divisor < 1:
            raise ValueError("num_workers must be >= 0 and eval_size_divisor >= 1")

    @classmethod
    def preset(cls, name: str, **changes: Any) -> SegDataConfig:
        """The sizes of a known data set (``ade20k``, ``voc``, ``seg_synth``), then ``changes``."""
        if name not in PRESETS:
            raise ValueError(f"unknown segmentation preset {name!r}; choose one of {sorted(PRESETS)}")
        check_keys(SegDataConfig, changes)
        return cls(**{**PRESETS[name], **changes})

    def replace(self, **changes: Any) -> SegDataConfig:
        """A copy with some fields changed; an unknown field name raises listing the valid ones."""
        check_keys(SegDataConfig, changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists): the form stored next to a checkpoint."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegDataConfig:
        check_keys(SegDataConfig, data)
        return cls(**data)
