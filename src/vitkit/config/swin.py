"""Swin Transformer (Liu et al. 2021, "Hierarchical Vision Transformer using Shifted Windows") configurations.

A Swin is a stack of stages: 4x4 patches embedded to C channels, then per stage a run of blocks alternating
window attention and shifted-window attention inside MxM windows, with 2x2 patch merging (C -> 2C, half the grid)
between stages. Sizes come from the paper's Sec. 3.3 (Swin-T/S/B/L), decoded from a variant letter; the named
table uses timm's names.

Tiling rules (the original code has no padding): the patch grid must halve cleanly at every merge, and each
stage's feature map must be a whole number of windows. A stage whose feature map is no larger than the window
uses one window covering it and no shift, as the original ``SwinTransformerBlock`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from vitkit.config.base import ModelConfig, check_rates, pair

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ACTIVATIONS = ("gelu", "gelu_tanh")

# name -> (width C of stage 1, blocks per stage, heads per stage); paper Sec. 3.3.
VARIANTS: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    "T": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "S": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "B": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "L": (192, (2, 2, 18, 2), (6, 12, 24, 48)),
}
_SIZE_NAMES = {"T": "tiny", "S": "small", "B": "base", "L": "large"}


def stage_grids(grid: tuple[int, int], num_stages: int) -> list[tuple[int, int]]:
    """Feature-map size (rows, cols) of each stage for a patch grid; each merge halves it."""
    return [(grid[0] >> s, grid[1] >> s) for s in range(num_stages)]


def stage_window(grid: tuple[int, int], window: int, always_shift: bool = False) -> tuple[int, int]:
    """(window, shift) a stage uses: the configured window and half of it as shift, or, when the feature map is
    no larger than the window, one window over the whole map and no shift (original ``SwinTransformerBlock``).
    ``always_shift`` keeps the shift on a map exactly one window large, as the Swin backbones of dense tasks do
    (mmseg's, and transformers' ``SwinBackbone`` with ``always_partition``)."""
    if min(grid) < window or (min(grid) == window and not always_shift):
        return min(grid), 0
    return window, window // 2


def _nearest_tiling(size: int, patch: int, stages: int, window: int) -> int:
    """The multiple of the patch size nearest ``size`` (from above, then below) that the windows tile."""
    step = patch * 2 ** (stages - 1)
    for candidate in sorted(range(step, 4 * size + step, step), key=lambda s: (abs(s - size), -s)):
        if tiling_problem((candidate // patch, candidate // patch), stages, window) is None:
            return candidate
    return step * window


def tiling_problem(grid: tuple[int, int], stages: int, window: int) -> str | None:
    """Why ``stages`` stages with ``window`` cannot run on a ``grid`` patch grid, or None when they can."""
    for s, (h, w) in enumerate(stage_grids(grid, stages)):
        if s < stages - 1 and (h % 2 or w % 2):
            return f"stage {s + 1}'s {h}x{w} feature map cannot be halved by patch merging"
        if window > min(h, w):
            return f"window {window} is larger than stage {s + 1}'s {h}x{w} feature map"
        m, _ = stage_window((h, w), window)
        if h % m or w % m:
            return f"stage {s + 1}'s {h}x{w} feature map is not a whole number of {m}x{m} windows"
    return None


@dataclass(frozen=True)
class SwinConfig(ModelConfig):
    """Everything that fixes a Swin Transformer's architecture and numerics (LayerNorm eps 1e-5 as in the
    original code, timm and transformers)."""

    family: ClassVar[str] = "swin"

    img_size: tuple[int, int] = (224, 224)
    patch_size: tuple[int, int] = (4, 4)
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-5
    act_layer: str = "gelu"
    zero_head: bool = False  # zero-initialised classifier, as for fine-tuning
    dynamic_img_size: bool = False  # accept other image sizes that the windows tile (masks built per size)
    always_shift: bool = False  # shifted windows also on a map one window large (dense tasks' backbones)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.9
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", pair(self.img_size))
        object.__setattr__(self, "patch_size", pair(self.patch_size))
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ValueError(
                f"depths {self.depths} and num_heads {self.num_heads} need one entry per stage (at least one)"
            )
        for s, (dim, heads) in enumerate(zip(self.stage_dims, self.num_heads)):
            if heads < 1 or dim % heads:
                raise ValueError(
                    f"stage {s + 1} has width {dim}, not divisible by its {heads} heads; choose heads that divide "
                    f"embed_dim * 2**stage (embed_dim={self.embed_dim})"
                )
        if self.window_size < 1:
            raise ValueError(f"window_size must be at least 1, got {self.window_size}")
        if self.act_layer not in ACTIVATIONS:
            raise ValueError(f"act_layer must be one of {ACTIVATIONS}, got {self.act_layer!r}")
        check_rates(self, "drop_rate", "attn_drop_rate", "proj_drop_rate", "drop_path_rate")
        self.check_image_size(self.img_size)

    # ------------------------------------------------------------------------------------------ geometry
    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Channels of each stage: C, 2C, 4C, ..."""
        return tuple(self.embed_dim * 2**s for s in range(len(self.depths)))

    @property
    def num_features(self) -> int:
        """Width of the pooled features fed to the classifier (the last stage's)."""
        return self.stage_dims[-1]

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid (rows, cols) of the first stage at the configured image size."""
        return (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])

    @property
    def stage_grids(self) -> list[tuple[int, int]]:
        return stage_grids(self.grid_size, self.num_stages)

    @property
    def reduction(self) -> int:
        """Pixels per token of the last stage along each axis."""
        return self.patch_size[0] * 2 ** (self.num_stages - 1)

    def check_image_size(self, size: tuple[int, int]) -> None:
        """Raise a one-line error naming the problem and a size that works when ``size`` cannot be tiled."""
        H, W = size
        ph, pw = self.patch_size
        if H % ph or W % pw:
            raise ValueError(
                f"image size {H}x{W} is not divisible by the patch size {ph}x{pw}; use a multiple of it, e.g. "
                f"{self._suggest(H, 0)}x{self._suggest(W, 1)}"
            )
        grid = (H // ph, W // pw)
        problem = tiling_problem(grid, self.num_stages, self.window_size)
        if problem is not None:
            windows = [m for m in range(1, min(grid) + 1) if tiling_problem(grid, self.num_stages, m) is None]
            window = min(windows, key=lambda m: (abs(m - self.window_size), -m)) if windows else None
            other = f", or window_size={window} (bias tables are resampled on load)" if window else ""
            raise ValueError(
                f"image size {H}x{W} does not tile: {problem}; use an image size such as "
                f"{self._suggest(H, 0)}x{self._suggest(W, 1)}{other}"
            )

    def _suggest(self, size: int, axis: int) -> int:
        return _nearest_tiling(size, self.patch_size[axis], self.num_stages, self.window_size)

    @classmethod
    def from_variant(cls, variant: str, **changes: Any) -> SwinConfig:
        """Decode a size letter (``"T"``, ``"S"``, ``"B"``, ``"L"``) into a config, then apply ``changes``."""
        try:
            dim, depths, heads = VARIANTS[variant]
        except KeyError:
            raise ValueError(f"unknown Swin variant {variant!r}; expected one of {sorted(VARIANTS)}") from None
        return cls(**{"embed_dim": dim, "depths": depths, "num_heads": heads, **changes})


def _build_table() -> dict[str, SwinConfig]:
    table: dict[str, SwinConfig] = {}
    # The ImageNet-1k classifiers of the original release, under timm's names; 384 px fine-tunes use 12x12
    # windows and no crop.
    for size, window, res in [("T", 7, 224), ("S", 7, 224), ("B", 7, 224), ("B", 12, 384), ("L", 7, 224)]:
        crop = 1.0 if res >= 384 else 0.9
        name = f"swin_{_SIZE_NAMES[size]}_patch4_window{window}_{res}"
        table[name] = SwinConfig.from_variant(size, window_size=window, img_size=res, crop_pct=crop)
    table["swin_large_patch4_window12_384"] = SwinConfig.from_variant("L", window_size=12, img_size=384, crop_pct=1.0)
    # 32 px images (CIFAR): 2x2 patches give a 16x16 grid; three stages of 4x4 windows (16 -> 8 -> 4).
    table["swin_cifar_patch2_window4_32"] = SwinConfig(
        img_size=32,
        patch_size=2,
        embed_dim=64,
        depths=(2, 2, 4),
        num_heads=(2, 4, 8),
        window_size=4,
        num_classes=10,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        crop_pct=1.0,
    )
    return table


MODELS: dict[str, SwinConfig] = _build_table()
