"""Architecture configuration: one frozen dataclass describes every ViT that vitkit builds.

Sizes come from the variant table of the paper (Table 1) and its follow-ups, decoded from strings such as
``"B/16"`` (big_vision style) instead of being written out per model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vitkit.config.base import ModelConfig, check_rates, pair

GLOBAL_POOLS = ("token", "avg")
# Paper Appendix D.4 (Table 8) compares none, 1D learned, 2D learned and relative; plus the fixed sin-cos tables of
# Vaswani et al. (1D, over the flattened patch sequence) and MoCo v3 / MAE (2D). 'relative' is BEiT's learned
# per-block bias on the attention logits, with no absolute embedding.
POS_EMBEDS = ("learned", "learned2d", "sincos1d", "sincos2d", "relative", "none")
ACTIVATIONS = ("gelu", "gelu_tanh")

# name -> (width D, depth L, heads, MLP width); ViT paper Table 1, Ti and S from DeiT / "How to train your ViT".
VARIANTS: dict[str, tuple[int, int, int, int]] = {
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "M": (512, 12, 8, 2048),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "H": (1280, 32, 16, 5120),
}


@dataclass(frozen=True)
class ViTConfig(ModelConfig):
    """Everything that fixes a Vision Transformer's architecture and numerics.

    Numerical conventions of imported weights (GELU variant, LayerNorm epsilon, input normalisation) live here
    so that a converted model reproduces the logits of the code that wrote it.
    """

    img_size: tuple[int, int] = (224, 224)
    patch_size: tuple[int, int] = (16, 16)
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    qkv_bias: bool = True
    class_token: bool = True
    distilled: bool = False  # DeiT: a second [dist] token with its own head
    global_pool: str = "token"
    fc_norm: bool = False  # timm's avg-pool head: LayerNorm after pooling instead of before
    pos_embed: str = "learned"
    pre_norm: bool = True
    representation_size: int | None = None  # pre-training head: Linear + tanh before the classifier
    drop_rate: float = 0.0
    pos_drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-6
    act_layer: str = "gelu"
    zero_head: bool = False  # zero-initialised classifier, as for fine-tuning (paper Sec. 3.2)
    dynamic_img_size: bool = False
    # Hybrid (paper Sec. 3.1): block counts of a BiT ResNetV2 stem whose feature map is cut into 1x1 patches.
    backbone_layers: tuple[int, ...] | None = None
    backbone_width: int = 64
    # Convolutional stem: 3x3 conv + BN + ReLU per entry, then a 1x1 projection; the strides multiply to the
    # patch size, so each token still covers PxP pixels.
    stem_channels: tuple[int, ...] | None = None
    stem_strides: tuple[int, ...] | None = None
    # Preprocessing that travels with the weights: inputs are (x / 255 - mean) / std.
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_pct: float = 0.875
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    family: ClassVar[str] = "vit"

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", pair(self.img_size))
        object.__setattr__(self, "patch_size", pair(self.patch_size))
        for name in ("backbone_layers", "stem_channels", "stem_strides"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(int(n) for n in getattr(self, name)))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {GLOBAL_POOLS}, got {self.global_pool!r}")
        if self.pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed must be one of {POS_EMBEDS}, got {self.pos_embed!r}")
        if self.act_layer not in ACTIVATIONS:
            raise ValueError(f"act_layer must be one of {ACTIVATIONS}, got {self.act_layer!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}; "
                "choose a head count that divides the width"
            )
        if self.global_pool == "token" and not self.class_token:
            raise ValueError("global_pool='token' needs class_token=True; use global_pool='avg' without one")
        if self.distilled and not self.class_token:
            raise ValueError("distilled=True (DeiT) needs class_token=True")
        if self.pos_embed in ("learned2d", "sincos2d") and self.embed_dim % 4:
            raise ValueError(
                f"pos_embed={self.pos_embed!r} splits the width over two axes; embed_dim must be a multiple of 4"
            )
        if self.pos_embed == "sincos1d" and self.embed_dim % 2:
            raise ValueError("pos_embed='sincos1d' pairs a sine and a cosine per frequency; embed_dim must be even")
        if (self.stem_channels is None) != (self.stem_strides is None):
            raise ValueError("stem_channels and stem_strides go together: give both or neither")
        if self.stem_channels is not None:
            if len(self.stem_channels) != len(self.stem_strides):
                raise ValueError(
                    f"stem_channels {self.stem_channels} and stem_strides {self.stem_strides} differ in length"
                )
            if self.patch_size[0] != self.patch_size[1] or math.prod(self.stem_strides) != self.patch_size[0]:
                raise ValueError(
                    f"the conv stem's strides {self.stem_strides} multiply to {math.prod(self.stem_strides)}, "
                    f"but the patch size is {self.patch_size}; make their product equal the (square) patch size"
                )
        if self.fc_norm and self.global_pool != "avg":
            raise ValueError("fc_norm=True applies only to global_pool='avg'")
        check_rates(self, "drop_rate", "pos_drop_rate", "attn_drop_rate", "proj_drop_rate", "drop_path_rate")
        if self.backbone_layers is None:
            for size, patch, axis in zip(self.img_size, self.patch_size, ("height", "width")):
                if size % patch:
                    raise ValueError(
                        f"image {axis} {size} is not divisible by patch size {patch}; "
                        f"use an image size that is a multiple of {patch} (e.g. {size - size % patch})"
                    )

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid (rows, cols) at the configured image size."""
        stride = self.patch_stride
        return (self.img_size[0] // stride[0], self.img_size[1] // stride[1])

    @property
    def patch_stride(self) -> tuple[int, int]:
        """Pixels per token along each axis: the patch size, times the stem's reduction for hybrids."""
        if self.backbone_layers is None:
            return self.patch_size
        reduction = 4 * 2 ** max(len(self.backbone_layers) - 1, 0)  # stem /4, then /2 per stage after the first
        return (reduction * self.patch_size[0], reduction * self.patch_size[1])

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + int(self.distilled)

    @property
    def mlp_ratio(self) -> float:
        return self.mlp_dim / self.embed_dim

    @classmethod
    def like(cls, other: ModelConfig, **changes: Any) -> ViTConfig:
        """The ViT inside a config of another family (an MAE's encoder, a ViT-Adapter's ViT): every field the two
        share by name, then ``changes``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        shared = {f.name: getattr(other, f.name) for f in dataclasses.fields(other) if f.name in names}  # type: ignore[arg-type]
        return cls(**{**shared, **changes})

    @classmethod
    def from_variant(cls, variant: str, **changes: Any) -> ViTConfig:
        """Decode ``"B/16"`` (size/patch) into a config, then apply ``changes``."""
        try:
            size, patch = variant.split("/")
            width, depth, heads, mlp = VARIANTS[size]
            patch_size = int(patch)
        except (ValueError, KeyError):
            raise ValueError(
                f"cannot parse variant {variant!r}; expected SIZE/PATCH with SIZE in {sorted(VARIANTS)}, e.g. 'B/16'"
            ) from None
        base = cls(embed_dim=width, depth=depth, num_heads=heads, mlp_dim=mlp, patch_size=patch_size)
        return base.replace(**changes) if changes else base
