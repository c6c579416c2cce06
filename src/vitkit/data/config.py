"""The data pipeline's settings: one frozen dataclass, validated on construction.

Normalisation travels with the model (``ViTConfig.mean/std/crop_pct``), so :meth:`DataConfig.from_model_config`
is the usual way to build one: inference then uses exactly what training used.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from vitkit.utils.typed import check_keys, strict_init

# The original ViT maps pixels to [-1, 1]; DeiT and most ImageNet-trained models use ImageNet's channel stats.
NORM_PRESETS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "vit": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
TRAIN_CROPS = ("rrc", "pad")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
VERIFY_MODES = ("header", "full", "none")
_RAND_RE = re.compile(r"^rand(-(m[0-9.]+|n[0-9]+|mstd[0-9.]+))*$")


def norm_preset(name: str) -> dict[str, tuple[float, float, float]]:
    """``{"mean": ..., "std": ...}`` of a named preset, to splat into DataConfig(...) or .replace(...)."""
    try:
        mean, std = NORM_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown normalisation preset {name!r}; choose one of {sorted(NORM_PRESETS)}") from None
    return {"mean": mean, "std": std}


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed timm-style RandAugment string: ``rand-m9-n2-mstd0.5`` = magnitude 9 of 10, 2 ops, noise 0.5."""

    magnitude: float = 9.0
    num_ops: int = 2
    magnitude_std: float = 0.0

    @classmethod
    def parse(cls, text: str) -> RandAugmentSpec:
        if not _RAND_RE.match(text):
            raise ValueError(
                f"cannot parse RandAugment spec {text!r}; expected 'rand-m<magnitude 0..10>-n<ops>[-mstd<std>]', "
                "e.g. 'rand-m9-n2' or 'rand-m9-n2-mstd0.5'"
            )
        values: dict[str, Any] = {}
        for part in text.split("-")[1:]:
            key = "magnitude_std" if part.startswith("mstd") else {"m": "magnitude", "n": "num_ops"}[part[0]]
            raw = part[4:] if key == "magnitude_std" else part[1:]
            values[key] = int(raw) if key == "num_ops" else float(raw)
        spec = cls(**values)
        if not 0 <= spec.magnitude <= 10:
            raise ValueError(f"RandAugment magnitude must lie in [0, 10], got {spec.magnitude} in {text!r}")
        if spec.num_ops < 1:
            raise ValueError(f"RandAugment needs at least one op per image, got n{spec.num_ops} in {text!r}")
        return spec


def _pair(value: Any, name: str, kind: type = int) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (kind(value), kind(value))
    pair = tuple(kind(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be a number or a pair, got {value!r}")
    return pair


@strict_init
@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are augmented.

    ``dataset`` is a name (``cifar10``, ``cifar100``) resolved from the data roots, or a path: an image folder
    (``root/<class>/<image>``, optionally with ``train/``, ``val/``, ``test/`` split folders), a folder of
    CIFAR python pickles, or a CSV file of ``path,label`` rows.
    """

    dataset: str = "cifar10"
    data_root: str | None = None  # searched first; then $VITKIT_DATA, ./data, ../shared/data
    img_size: int | tuple[int, int] = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_pct: float = 0.875  # eval: resize to img_size / crop_pct, then centre crop img_size
    interpolation: str = "bicubic"
    # Geometry of training crops: RandomResizedCrop (ImageNet recipes) or zero-padded random crop (CIFAR).
    train_crop: str = "rrc"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    padding: int = 4
    hflip: float = 0.5
    # Batch-level augmentation (BatchAugment, on the device).
    randaugment: str | None = None  # e.g. 'rand-m9-n2' or 'rand-m9-n2-mstd0.5'
    trivialaugment: bool = False
    color_jitter: float | tuple[float, ...] = 0.0  # brightness, contrast, saturation[, hue]; a number sets all three
    random_erasing: float = 0.0  # probability per image
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5  # with both mixup and cutmix on: chance that a batch uses cutmix
    label_smoothing: float = 0.0
    repeated_aug: int = 1  # DeiT: each drawn image this many times, differently augmented (1 = off)
    # Loading.
    num_workers: int = 2
    in_memory: bool = False  # decode the split once into a uint8 tensor; crop and flip then happen per batch
    cache: bool = True  # keep the in-memory tensor on disk for the next run
    cache_dir: str | None = None  # default $VITKIT_CACHE or ~/.cache/vitkit
    verify: str = "header"  # check files when listing: 'header' (cheap), 'full' (decode all) or 'none'
    strict: bool = False  # raise on a corrupt image instead of skipping it with a warning
    download: bool = True  # fetch named data sets from their canonical source when not found locally

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", _pair(self.img_size, "img_size"))
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"{name} needs three channel values, got {value}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "scale", _pair(self.scale, "scale", float))
        object.__setattr__(self, "ratio", _pair(self.ratio, "ratio", float))
        cj = self.color_jitter
        cj = (float(cj),) * 3 if isinstance(cj, (int, float)) else tuple(float(v) for v in cj)
        if len(cj) not in (3, 4) or min(cj) < 0:
            raise ValueError(f"color_jitter is a number or 3-4 non-negative strengths (b, c, s[, h]), got {cj}")
        object.__setattr__(self, "color_jitter", cj)
        self._check()

    def _check(self) -> None:
        choices = {"train_crop": TRAIN_CROPS, "interpolation": INTERPOLATIONS, "verify": VERIFY_MODES}
        for name, options in choices.items():
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {options}, got {getattr(self, name)!r}")
        if min(self.img_size) < 1:
            raise ValueError(f"img_size must be positive, got {self.img_size}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must lie in (0, 1], got {self.crop_pct}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")
        for name in ("hflip", "random_erasing", "mix_prob", "switch_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.repeated_aug < 1:
            raise ValueError(f"repeated_aug must be >= 1 (1 = off; DeiT uses 3), got {self.repeated_aug}")
        if min(self.mixup_alpha, self.cutmix_alpha, self.padding, self.num_workers) < 0:
            raise ValueError("mixup_alpha, cutmix_alpha, padding and num_workers must be >= 0")
        if self.randaugment is not None:
            RandAugmentSpec.parse(self.randaugment)
            if self.trivialaugment:
                raise ValueError("choose one of randaugment and trivialaugment, not both")
        if self.color_jitter[3:] and not self.color_jitter[3] <= 0.5:
            raise ValueError(f"hue jitter must lie in [0, 0.5], got {self.color_jitter[3]}")

    @property
    def randaugment_spec(self) -> RandAugmentSpec | None:
        return RandAugmentSpec.parse(self.randaugment) if self.randaugment else None

    @property
    def mixing(self) -> bool:
        """Whether training batches are mixed (Mixup or CutMix)."""
        return self.mix_prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def replace(self, **changes: Any) -> DataConfig:
        """A copy with some fields changed; an unknown field name raises listing the valid ones."""
        check_keys(DataConfig, changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples become lists): the form stored next to a checkpoint."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        check_keys(DataConfig, data)
        return cls(**data)

    @classmethod
    def from_model_config(cls, model_cfg: Any, **changes: Any) -> DataConfig:
        """Image size and normalisation from a model config (or a registered model name), then ``changes``."""
        if isinstance(model_cfg, str):  # the name table is plain data beside the configs: no model code imported
            from vitkit.config.named import get_config

            model_cfg = get_config(model_cfg)
        base = {
            "img_size": model_cfg.img_size,
            "mean": model_cfg.mean,
            "std": model_cfg.std,
            "crop_pct": model_cfg.crop_pct,
        }
        check_keys(DataConfig, changes)
        return cls(**{**base, **changes})
