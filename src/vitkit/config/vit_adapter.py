"""ViT-Adapter (Chen et al., ICLR 2023, "Vision Transformer Adapter for Dense Predictions") configurations.

A plain ViT, pre-trained without any image prior, plus a convolutional spatial prior module and interaction blocks
(deformable-attention injectors and extractors) that turn it into a four-level pyramid for dense heads. Fields are
flat: the ViT's, the position table's pre-training grid, and the adapter's, with the defaults of the original
``ViTAdapter`` (czczup/ViT-Adapter, segmentation/mmseg_custom/models/backbones/vit_adapter.py). The named models
are the backbones of its ADE20K UperNet configs (segmentation/configs/ade20k/upernet_*_adapter_*_512_160k_ade20k.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from vitkit.config.base import ModelConfig, check_rates, pair
from vitkit.config.vit import VARIANTS, ViTConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # DeiT checkpoints (the tiny, small and base configs)
IMAGENET_STD = (0.229, 0.224, 0.225)
STRIDES = (4, 8, 16, 32)  # the pyramid's levels; the ViT's tokens are the 1/16 one


def nearest_multiple(size: int, step: int) -> int:
    """The multiple of ``step`` closest to ``size`` (at least ``step``)."""
    return max(step, round(size / step) * step)


def even_split(depth: int, parts: int = 4) -> tuple[tuple[int, int], ...]:
    """``parts`` consecutive [first, last] block ranges covering ``depth`` blocks, as the original configs use."""
    step = depth // parts
    bounds = [i * step for i in range(parts)] + [depth]
    return tuple((bounds[i], bounds[i + 1] - 1) for i in range(parts))


@dataclass(frozen=True)
class ViTAdapterConfig(ModelConfig):
    """Everything that fixes a ViT-Adapter backbone; ``vit_config()`` is its ViT part as a plain vitkit ViT."""

    family: ClassVar[str] = "vit_adapter"

    # The ViT (the original's TIMMVisionTransformer).
    img_size: tuple[int, int] = (512, 512)  # nominal input; any multiple of 32 runs (positions are resampled)
    patch_size: tuple[int, int] = (16, 16)
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-6
    layer_scale: float | None = None  # initial ls1/ls2 gamma; the original's detection ViT has layer_scale=True: 1.0
    window_attn: tuple[bool, ...] | None = None  # per block: attention inside windows (None: global everywhere)
    window_size: int = 14
    pretrain_size: tuple[int, int] = (224, 224)  # the image size the position table was trained at
    # The adapter.
    conv_inplane: int = 64  # spatial prior module widths: 64, 128, 256, 256
    n_points: int = 4  # sampling points per head and level of the deformable attention
    deform_num_heads: int = 6
    deform_ratio: float = 1.0  # value width of the deformable attention, as a fraction of embed_dim
    init_values: float = 0.0  # injector's gamma: 0 leaves the pre-trained ViT's features untouched at the start
    interaction_indexes: tuple[tuple[int, int], ...] = even_split(12)  # [first, last] blocks of each interaction
    with_cffn: bool = True  # the extractor's convolutional FFN
    cffn_ratio: float = 0.25
    add_vit_feature: bool = True  # add the ViT's tokens (resized) to each level of the output pyramid
    use_extra_extractor: bool = True  # two more extractors after the last interaction
    # Preprocessing that travels with the weights: inputs are (x / 255 - mean) / std.
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("img_size", "patch_size", "pretrain_size"):
            object.__setattr__(self, name, pair(getattr(self, name)))
        object.__setattr__(
            self, "interaction_indexes", tuple(tuple(int(i) for i in r) for r in self.interaction_indexes)
        )
        if self.window_attn is not None:
            object.__setattr__(self, "window_attn", tuple(bool(w) for w in self.window_attn))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        check_rates(self, "drop_path_rate")
        if self.patch_size != (16, 16):
            raise ValueError(
                f"patch_size {self.patch_size} is not supported: ViT-Adapter pairs the ViT's tokens with its 1/16 "
                "level (and the 1/8 and 1/32 levels around it); use patch_size=16"
            )
        for size, what in ((self.img_size, "img_size"), (self.pretrain_size, "pretrain_size")):
            step = 32 if what == "img_size" else 16
            if size[0] % step or size[1] % step:
                why = "the pyramid reaches 1/32" if step == 32 else "the position table has one entry per 16x16 patch"
                raise ValueError(
                    f"{what} {size[0]}x{size[1]} is not divisible by {step} ({why}); use "
                    f"{nearest_multiple(size[0], step)}x{nearest_multiple(size[1], step)}"
                )
        for width, heads, what in (
            (self.embed_dim, self.num_heads, "num_heads"),
            (self.embed_dim, self.deform_num_heads, "deform_num_heads"),
            (int(self.embed_dim * self.deform_ratio), self.deform_num_heads, "deform_num_heads"),
        ):
            if width % heads:
                raise ValueError(
                    f"width {width} is not divisible by {what} {heads}; choose a head count that divides embed_dim "
                    "and int(embed_dim * deform_ratio)"
                )
        self._check_interactions()
        if self.add_vit_feature and len(self.interaction_indexes) != len(STRIDES):
            raise ValueError(
                f"add_vit_feature adds one interaction's ViT map to each of the 4 levels, but there are "
                f"{len(self.interaction_indexes)} interactions; use 4 interaction_indexes or add_vit_feature=False"
            )
        if self.window_attn is not None and len(self.window_attn) != self.depth:
            raise ValueError(
                f"window_attn has {len(self.window_attn)} entries for {self.depth} blocks; give one per block"
            )
        if (
            self.window_size < 1
            or self.n_points < 1
            or self.conv_inplane < 1
            or int(self.embed_dim * self.cffn_ratio) < 1
        ):
            raise ValueError("window_size, n_points, conv_inplane and int(embed_dim * cffn_ratio) must be at least 1")

    def _check_interactions(self) -> None:
        """The interactions' [first, last] ranges must run through blocks 0..depth-1 in order, none empty."""
        expected_first = 0
        for first, last in self.interaction_indexes:
            if first != expected_first or last < first:
                break
            expected_first = last + 1
        else:
            if expected_first == self.depth and self.interaction_indexes:
                return
        example = [list(r) for r in even_split(self.depth)] if self.depth >= 4 else [[0, self.depth - 1]]
        raise ValueError(
            f"interaction_indexes {[list(r) for r in self.interaction_indexes]} must split blocks 0..{self.depth - 1} "
            f"into consecutive [first, last] ranges in order, e.g. {example}"
        )

    @property
    def pretrain_grid(self) -> tuple[int, int]:
        """The position table's grid (rows, cols): ``pretrain_size / 16``."""
        return (self.pretrain_size[0] // self.patch_size[0], self.pretrain_size[1] // self.patch_size[1])

    @property
    def grid_size(self) -> tuple[int, int]:
        """The ViT's token grid at ``img_size``."""
        return (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])

    @property
    def windowed(self) -> tuple[bool, ...]:
        """Per block: whether it attends inside windows."""
        return self.window_attn if self.window_attn is not None else (False,) * self.depth

    def vit_config(self, **changes: Any) -> ViTConfig:
        """The ViT part as a plain vitkit ViT at the pre-training size: class token (its position row is kept,
        unused, as in the original), no head. Layer scale and windowed attention have no ViTConfig fields, so a
        ViT built from this config has neither."""
        cfg = ViTConfig.like(self, img_size=self.pretrain_size, num_classes=0)
        return cfg.replace(**changes) if changes else cfg


def _adapter(size: str, **fields: Any) -> ViTAdapterConfig:
    width, depth, heads, mlp = VARIANTS[size]
    sizes = dict(embed_dim=width, depth=depth, num_heads=heads, mlp_dim=mlp, interaction_indexes=even_split(depth))
    return ViTAdapterConfig(**{**sizes, **fields})


# The backbones of the original ADE20K UperNet configs at 512x512: upernet_deit_adapter_{tiny,small,base}_512_160k
# (DeiT initialisation, ImageNet statistics) and upernet_augreg_adapter_large_512_160k (AugReg, inputs in [-1, 1]).
# All with a 224 px pre-training grid; the original large config loads a 384 px AugReg checkpoint
# (pretrain_size=384: .replace(pretrain_size=384) gives that model, 389,120 parameters more).
MODELS: dict[str, ViTAdapterConfig] = {
    "vit_adapter_tiny_patch16": _adapter("Ti", drop_path_rate=0.1, deform_num_heads=6, deform_ratio=1.0),
    "vit_adapter_small_patch16": _adapter("S", drop_path_rate=0.2, deform_num_heads=6, deform_ratio=1.0),
    "vit_adapter_base_patch16": _adapter("B", drop_path_rate=0.3, deform_num_heads=12, deform_ratio=0.5),
    "vit_adapter_large_patch16": _adapter(
        "L", drop_path_rate=0.4, deform_num_heads=16, deform_ratio=0.5, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
    ),
}
