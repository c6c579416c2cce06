"""Semantic segmentation models: a backbone of any family, a neck that makes its maps a pyramid, a decode head and an
auxiliary head (mmseg's ``EncoderDecoder``), as one config.

The backbone keeps its own config (a ViT, a Swin, a ResNetV2, a ViT-Adapter); fields the segmentor does not own
(``img_size``, ``drop_path_rate``, ...) are the backbone's, so ``replace(img_size=640)`` reaches it. The neck turns
the backbone's maps into the four-level pyramid (strides 4-32) the heads take: ``simple_pyramid`` for a plain ViT's
single stride-16 map (ViTDet, Li et al. 2022), ``norms`` (a LayerNorm per map, as mmseg's and transformers' Swin
backbones add) or ``none`` for backbones that already give a pyramid. Heads: ``upernet`` (mmseg's UPerHead, pyramid
pooling at scales 1, 2, 3, 6 plus FPN) or ``semantic_fpn`` (Kirillov et al. 2019, light); auxiliary: mmseg's FCN
head on one map, its loss weighted 0.4 as in the ADE20K configs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vitkit.config.base import ModelConfig, check_rates
from vitkit.config.swin import SwinConfig
from vitkit.config.vit import ViTConfig
from vitkit.config.vit_adapter import MODELS as ADAPTERS

NECKS = ("none", "simple_pyramid", "norms")
HEADS = ("upernet", "semantic_fpn")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SegmentorConfig(ModelConfig):
    """A backbone config, the pyramid it gives, and the heads on it (see the module docstring)."""

    family: ClassVar[str] = "segmentor"

    backbone: ModelConfig = field(default_factory=lambda: ADAPTERS["vit_adapter_tiny_patch16"])
    out_indices: tuple[int, ...] | None = None  # the backbone's maps the neck takes (None: its last four)
    neck: str = "none"
    neck_channels: int = 256  # simple_pyramid's common width
    head: str = "upernet"
    channels: int = 512  # the decode head's width (128 for semantic_fpn's scale heads)
    pool_scales: tuple[int, ...] = (1, 2, 3, 6)
    dropout: float = 0.1
    aux_head: bool = True
    aux_index: int = 2  # the pyramid level the auxiliary head reads (stride 16)
    aux_channels: int = 256
    aux_num_convs: int = 1
    aux_concat_input: bool = False
    aux_weight: float = 0.4
    num_classes: int = 150
    ignore_index: int = 255
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # classes, palette

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            raise TypeError(
                "SegmentorConfig.backbone is a config object; change its fields with replace(backbone={...})"
            )
        if self.out_indices is not None:
            object.__setattr__(self, "out_indices", tuple(int(i) for i in self.out_indices))
        object.__setattr__(self, "pool_scales", tuple(int(s) for s in self.pool_scales))
        if self.neck not in NECKS:
            raise ValueError(f"neck must be one of {NECKS}, got {self.neck!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be at least 1 (a segmentor always has a head), got {self.num_classes}")
        if not 0 <= self.aux_index < 4:
            raise ValueError(f"aux_index must pick one of the four pyramid levels (0-3), got {self.aux_index}")
        if self.aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {self.aux_weight}")
        check_rates(self, "dropout")

    # -------------------------------------------------------------------------- fields the backbone owns
    @property
    def img_size(self) -> tuple[int, int]:
        return self.backbone.img_size

    @property
    def in_chans(self) -> int:
        return self.backbone.in_chans

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.backbone.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.backbone.std

    @property
    def crop_pct(self) -> float:
        return 1.0  # segmentation evaluates whole images (or slides over them), never a centre crop

    def replace(self, **changes: Any) -> SegmentorConfig:
        """A copy with some fields changed; fields of the backbone (``img_size``, ``drop_path_rate``, ...) and a
        ``backbone={...}`` mapping change the backbone; an unknown name raises listing both sets."""
        own = {f.name for f in dataclasses.fields(self)}
        theirs = {f.name for f in dataclasses.fields(self.backbone)}  # type: ignore[arg-type]
        backbone_changes = dict(changes.pop("backbone", {}) if isinstance(changes.get("backbone"), dict) else {})
        backbone_changes.update({k: changes.pop(k) for k in list(changes) if k not in own and k in theirs})
        unknown = sorted(set(changes) - own)
        if unknown:
            raise TypeError(
                f"unknown SegmentorConfig field(s) {unknown}; valid fields: {sorted(own)} and the backbone's "
                f"{sorted(theirs)}"
            )
        if backbone_changes:
            changes["backbone"] = self.backbone.replace(**backbone_changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the backbone as ``{"family": ..., "config": {...}}`` (the family descriptor reads it back)."""
        out = super().to_dict()
        out["backbone"] = {"family": self.backbone.family, "config": self.backbone.to_dict()}
        return out

    @property
    def pyramid_indices(self) -> tuple[int, ...] | None:
        """What the backbone is asked for: ``out_indices``, or its last map alone under a simple pyramid."""
        if self.out_indices is not None:
            return self.out_indices
        return (-1,) if self.neck == "simple_pyramid" else None


# ------------------------------------------------------------------------------------------------ tables
def _upernet(backbone: ModelConfig, **fields: Any) -> SegmentorConfig:
    """The ADE20K UperNet of the original configs: 150 classes, 512 crop, UPerHead 512 wide, FCN aux 256 on level 2."""
    return SegmentorConfig(backbone=backbone, **fields)


def _build_table() -> dict[str, SegmentorConfig]:
    table: dict[str, SegmentorConfig] = {}
    for size in ("tiny", "small", "base", "large"):
        adapter = ADAPTERS[f"vit_adapter_{size}_patch16"]
        table[f"upernet_vit_adapter_{size}_patch16"] = _upernet(adapter)
        # The baseline every ViT-Adapter result is compared with: the same ViT with ViTDet's simple pyramid.
        vit = adapter.vit_config().replace(num_classes=0, global_pool="avg", dynamic_img_size=True)
        table[f"upernet_vit_{size}_patch16"] = _upernet(vit, neck="simple_pyramid", neck_channels=vit.embed_dim)
    # Swin-T UperNet (Liu et al. 2021, ADE20K): a LayerNorm on each stage's output, as mmseg's Swin backbone. vitkit's
    # Swin does not pad maps to whole windows, so at 512 px (maps 128, 64, 32, 16) the window is 8, not 7; 7x7
    # weights load with their bias tables resampled.
    swin = SwinConfig.from_variant("T", img_size=512, window_size=8, num_classes=0, drop_path_rate=0.3,
                                   dynamic_img_size=True, always_shift=True)  # fmt: skip
    table["upernet_swin_tiny_patch4_window8_512"] = _upernet(swin, neck="norms")
    return table


MODELS: dict[str, SegmentorConfig] = _build_table()

__all__ = ["HEADS", "MODELS", "NECKS", "SegmentorConfig", "ViTConfig"]
