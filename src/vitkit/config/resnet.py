"""ResNetV2 configurations: BiT classifiers (Kolesnikov et al. 2020), a small ResNet for 32 px images, and the
hybrid ViTs whose stem is a ResNetV2 (ViT paper Sec. 3.1; the AugReg hybrids of "How to train your ViT").

Names and parameter counts follow timm (``resnetv2_50x1_bit``, ``vit_small_r26_s32_224`` ...). The numerics of
the code that trained each model travel in the config: BiT (and timm's BiT port) pads convolutions symmetrically,
standardises weights as ``(w - mean) / sqrt(var + eps)`` and uses GroupNorm epsilon 1e-5; the hybrids' JAX code
pads as TensorFlow's 'SAME', standardises as ``(w - mean) / (std + 1e-5)`` and uses GroupNorm epsilon 1e-6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from vitkit.config.base import ModelConfig, check_rates, pair
from vitkit.config.vit import ViTConfig

BLOCKS = ("preact_bottleneck", "bottleneck", "preact_basic")
STEMS = ("fixed", "same", "cifar")  # BiT's 7x7/2 + pad + pool; the hybrid's 'SAME' stem; a 3x3/1 conv, no pool
PADDINGS = ("symmetric", "same")
WS_STYLES = ("var", "std")  # (w - m) / sqrt(var + eps)  |  (w - m) / (std + eps)
BIT_MEAN = (0.5, 0.5, 0.5)  # BiT and the JAX hybrids take inputs in [-1, 1]


@dataclass(frozen=True)
class ResNetV2Config(ModelConfig):
    """A ResNetV2 classifier: stem, stages of residual units, (pre-activation) final norm, global pool, head.

    Stage ``i`` has base width ``width * 2**i``; a bottleneck unit outputs four times its base width, a basic
    unit its base width. The first stage keeps the stem's resolution, every later one halves it.
    """

    family: ClassVar[str] = "resnetv2"

    layers: tuple[int, ...] = (3, 4, 6, 3)
    width: int = 64  # stem channels; BiT's width factor k gives 64 * k
    block: str = "preact_bottleneck"
    stem: str = "fixed"
    in_chans: int = 3
    num_classes: int = 1000
    img_size: tuple[int, int] = (224, 224)  # the training resolution; a CNN accepts other sizes too
    drop_rate: float = 0.0  # dropout before the classifier
    drop_path_rate: float = 0.0  # stochastic depth, growing linearly over the units
    padding: str = "symmetric"
    ws_style: str = "var"
    ws_eps: float = 1e-8  # timm's BiT port; the original BiT code uses 1e-10
    gn_groups: int = 32
    gn_eps: float = 1e-5
    mean: tuple[float, float, float] = BIT_MEAN
    std: tuple[float, float, float] = BIT_MEAN
    crop_pct: float = 0.875
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # e.g. the class names

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
        object.__setattr__(self, "img_size", pair(self.img_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        for name, value, allowed in (
            ("block", self.block, BLOCKS),
            ("stem", self.stem, STEMS),
            ("padding", self.padding, PADDINGS),
            ("ws_style", self.ws_style, WS_STYLES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not self.layers or min(self.layers) < 1:
            raise ValueError(f"layers must list at least one stage of >= 1 unit, e.g. (3, 4, 6, 3); got {self.layers}")
        for channels in (self.width, *self.stage_widths):
            if channels % self.gn_groups:
                raise ValueError(
                    f"{channels} channels do not split into gn_groups={self.gn_groups}; choose gn_groups dividing "
                    f"the stem width {self.width} (e.g. gn_groups=8)"
                )
        check_rates(self, "drop_rate", "drop_path_rate")

    @property
    def expansion(self) -> int:
        return 1 if self.block == "preact_basic" else 4

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """Output channels of each stage."""
        return tuple(self.expansion * self.width * 2**i for i in range(len(self.layers)))

    @property
    def num_features(self) -> int:
        return self.stage_widths[-1]

    @property
    def reduction(self) -> int:
        """Pixels per feature-map cell: the stem's reduction times 2 per stage after the first."""
        return (1 if self.stem == "cifar" else 4) * 2 ** (len(self.layers) - 1)


# --------------------------------------------------------------------------------------------- tables
def _bit(depth: int, k: int, res: int = 448, classes: int = 1000, **fields: Any) -> ResNetV2Config:
    layers = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
    crop = 1.0 if res >= 384 else 0.875  # timm: in21k_ft_in1k at 448 px without cropping
    return ResNetV2Config(layers=layers, width=64 * k, img_size=res, num_classes=classes, crop_pct=crop, **fields)


def _cifar(layers: tuple[int, ...], width: int) -> ResNetV2Config:
    # Pre-activation basic units (He et al. 2016, "Identity mappings") with BiT's GN + WS, which needs no batch
    # statistics: the same outputs in train and eval, per-sample under Mixup, and nothing to sync under DDP.
    return ResNetV2Config(
        layers=layers,
        width=width,
        block="preact_basic",
        stem="cifar",
        num_classes=10,
        img_size=32,
        gn_groups=8,
        crop_pct=1.0,
    )


def _hybrid(variant: str, res: int, layers: tuple[int, ...], **fields: Any) -> ViTConfig:
    # JAX AugReg hybrids: a ResNetV2 stem (post-activation, 'SAME' padding), inputs in [-1, 1], no crop at 384.
    patch = fields.pop("patch", 1)
    crop = 1.0 if res >= 384 else 0.9
    return ViTConfig.from_variant(f"{variant}/{patch}", img_size=res, backbone_layers=layers, crop_pct=crop, **fields)


def _bit_table() -> dict[str, ResNetV2Config]:
    # BiT-M: the bare name is timm's default tag, .goog_in21k_ft_in1k (448 px; 480 for 152x4); .goog_in21k is the
    # ImageNet-21k pre-training (21843 classes, 224 px); DeiT-style distilled / teacher checkpoints at 224 and 384.
    table = {}
    for depth, k in ((50, 1), (50, 3), (101, 1), (101, 3), (152, 2), (152, 4)):
        name, res = f"resnetv2_{depth}x{k}_bit", 480 if (depth, k) == (152, 4) else 448
        table[name] = table[f"{name}.goog_in21k_ft_in1k"] = _bit(depth, k, res)
        table[f"{name}.goog_in21k"] = _bit(depth, k, 224, classes=21843)
    table["resnetv2_50x1_bit.goog_distilled_in1k"] = _bit(50, 1, 224)
    table["resnetv2_152x2_bit.goog_teacher_in21k_ft_in1k"] = _bit(152, 2, 224)
    table["resnetv2_152x2_bit.goog_teacher_in21k_ft_in1k_384"] = _bit(152, 2, 384)
    return table


MODELS: dict[str, ModelConfig] = {
    **_bit_table(),
    # 32 px images: a ResNet-20-like net (3 stages of 3 units, 16-32-64 wide) and a pre-act ResNet-18.
    "resnet_cifar20": _cifar((3, 3, 3), 16),
    "resnet_cifar18": _cifar((2, 2, 2, 2), 64),
    # Hybrids (timm vision_transformer_hybrid.py): R+Ti/16 has the ResNet root only, 8x8 patches on its /4 map.
    "vit_tiny_r_s16_p8_224": _hybrid("Ti", 224, (), patch=8),
    "vit_tiny_r_s16_p8_384": _hybrid("Ti", 384, (), patch=8),
    "vit_small_r26_s32_224": _hybrid("S", 224, (2, 2, 2, 2)),
    "vit_small_r26_s32_384": _hybrid("S", 384, (2, 2, 2, 2)),
    "vit_base_r50_s16_224": _hybrid("B", 224, (3, 4, 9), num_classes=0),  # timm: the in21k release, no head
    "vit_large_r50_s32_224": _hybrid("L", 224, (3, 4, 6, 3)),
    "vit_large_r50_s32_384": _hybrid("L", 384, (3, 4, 6, 3)),
}
