"""Masked autoencoder (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners") configurations.

The encoder is a plain ViT that sees only the visible patches; a light decoder of its own width and depth
reconstructs the pixels of the masked ones. Sizes follow the official ``models_mae.py``: the encoder from the
ViT variant table, the decoder 512 wide, 8 deep, 16 heads (paper Sec. 4, "Decoder design").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vitkit.config.base import ModelConfig, pair
from vitkit.config.vit import VARIANTS, ViTConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the official MAE normalises with ImageNet statistics
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_mask_ratio(ratio: float) -> float:
    """The fraction of patches hidden; 1.0 would leave the encoder nothing to see."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {ratio}; the paper uses 0.75 (mask_ratio=0.75)")
    return float(ratio)


@dataclass(frozen=True)
class MAEConfig(ModelConfig):
    """Encoder (a ViT with fixed 2D sin-cos positions and a class token), decoder, masking and loss."""

    family: ClassVar[str] = "mae"

    img_size: tuple[int, int] = (224, 224)
    patch_size: tuple[int, int] = (16, 16)
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    qkv_bias: bool = True
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    decoder_mlp_dim: int = 2048
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True  # paper Sec. 3 / Table 1d: per-patch normalised pixel targets
    norm_eps: float = 1e-6  # models_mae.py: partial(nn.LayerNorm, eps=1e-6); transformers' ViTMAE uses 1e-12
    act_layer: str = "gelu"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", pair(self.img_size))
        object.__setattr__(self, "patch_size", pair(self.patch_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "mask_ratio", check_mask_ratio(self.mask_ratio))
        self.encoder_config()  # the encoder's checks: sizes divisible by the patch, heads, activation, width % 4
        Dd, heads = self.decoder_embed_dim, self.decoder_num_heads
        if Dd % heads or Dd % 4:
            raise ValueError(
                f"decoder_embed_dim {Dd} must be divisible by decoder_num_heads {heads} and by 4 (for the 2D sin-cos "
                "table); choose a width and head count that fit, e.g. 512 and 16"
            )

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    def encoder_config(self, **changes: Any) -> ViTConfig:
        """The encoder as a vitkit ViT: class token, fixed sin-cos positions, final LayerNorm, no head."""
        cfg = ViTConfig.like(self, num_classes=0, pos_embed="sincos2d")
        return cfg.replace(**changes) if changes else cfg


def _mae(variant: str, res: int, **fields: Any) -> MAEConfig:
    size, patch = variant.split("/")
    width, depth, heads, mlp = VARIANTS[size]
    sizes = dict(embed_dim=width, depth=depth, num_heads=heads, mlp_dim=mlp)
    return MAEConfig(img_size=res, patch_size=int(patch), **{**sizes, **fields})


# vit_cifar_convstem_32's transformer (the cifar10_vit recipe), mean/std 0.5 as that recipe's, so probes of the
# two encoders see the same inputs. The decoder is half the width, 2 blocks: at 65 tokens against the encoder's 17,
# a 128-wide decoder cost more than the encoder; 64 wide trains 1.37x more images per second on the 2-core CPU
# (interleaved timing of forward + backward at batch 128, fp32), which a 30-minute budget needs more.
CIFAR_ENCODER = dict(embed_dim=128, depth=6, num_heads=4, mlp_dim=512, mean=(0.5,) * 3, std=(0.5,) * 3)
CIFAR_DECODER = dict(decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2, decoder_mlp_dim=256)

MODELS: dict[str, MAEConfig] = {
    # models_mae.py: mae_vit_{base,large}_patch16_dec512d8b, mae_vit_huge_patch14_dec512d8b.
    "mae_vit_base_patch16": _mae("B/16", 224),
    "mae_vit_large_patch16": _mae("L/16", 224),
    "mae_vit_huge_patch14": _mae("H/14", 224),
    # 32 px images (CIFAR): the cifar10_vit encoder size (width 128, depth 6, 4 heads) with plain 4x4 patches
    # (an 8x8 grid, 16 visible at mask 0.75) and a light 2-block decoder. Not the conv stem: its 3x3
    # convolutions cross patch borders, so visible tokens would carry pixels of masked patches. Raw-pixel targets:
    # a 4x4 patch's own mean and variance are too much of its content to leave out of the task (and a picture of
    # norm_pix predictions must borrow them from the original, showing outlines the model did not produce).
    "mae_vit_cifar_patch4_32": _mae("Ti/4", 32, **CIFAR_ENCODER, **CIFAR_DECODER, norm_pix_loss=False, crop_pct=1.0),
}
