"""The named-model table: registry names (``vit_base_patch16_224``, ``swin_tiny_patch4_window7_224``, ...) to
configs, as plain data.

It lives with the configs, at the bottom of the dependency order, so that any layer (data presets, weight
converters) can look a name up without importing models; :mod:`vitkit.registry` adds the factory on top.
ViT sizes come from :data:`vitkit.config.VARIANTS`; an entry only states its variant string and what differs.
Other families keep their tables beside their configs (``vitkit.config.<family>.MODELS``); this module finds
them by listing the package and merges them here.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from typing import Any

import vitkit.config as config_package
from vitkit.config.base import ModelConfig
from vitkit.config.vit import ViTConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SIZE_NAMES = {"Ti": "tiny", "S": "small", "B": "base", "L": "large", "H": "huge"}


def _vit(variant: str, res: int, **fields: Any) -> ViTConfig:
    # The released ViT checkpoints expect inputs in [-1, 1]; 384 px fine-tunes are evaluated without cropping.
    fields.setdefault("crop_pct", 1.0 if res >= 384 else 0.9)
    return ViTConfig.from_variant(variant, img_size=res, **fields)


def _deit(variant: str, res: int, **fields: Any) -> ViTConfig:
    crop = 1.0 if res >= 384 else 0.875
    return _vit(variant, res, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=crop, **fields)


def _build_table() -> dict[str, ViTConfig]:
    table: dict[str, ViTConfig] = {}
    # (size, patch, resolutions): the paper's Table 2/5 models and the AugReg / DINO checkpoints in common use.
    for size, patch, resolutions in [
        ("Ti", 16, (224, 384)),
        ("S", 8, (224,)),
        ("S", 16, (224, 384)),
        ("S", 32, (224, 384)),
        ("B", 8, (224,)),
        ("B", 16, (224, 384)),
        ("B", 32, (224, 384)),
        ("L", 14, (224,)),
        ("L", 16, (224, 384)),
        ("L", 32, (224, 384)),
        ("H", 14, (224,)),
    ]:
        for res in resolutions:
            table[f"vit_{_SIZE_NAMES[size]}_patch{patch}_{res}"] = _vit(f"{size}/{patch}", res)
    # Small-image configurations for 32x32 data such as CIFAR: patch 4 gives an 8x8 grid.
    for size in ("Ti", "S"):
        table[f"vit_{_SIZE_NAMES[size]}_patch4_32"] = _vit(f"{size}/4", 32, num_classes=10, crop_pct=1.0)
    # The CIFAR-10 recipe's model: width 128, depth 6, a four-conv stem (32, 64, 128, 128 channels; strides 1, 2,
    # 1, 2) to an 8x8 grid. It won the GPU-proxy recipe search in docs/benchmarks.md ("How the recipe was chosen").
    table["vit_cifar_convstem_32"] = _vit(
        "Ti/4",
        32,
        embed_dim=128,
        num_heads=4,
        depth=6,
        mlp_dim=512,
        num_classes=10,
        crop_pct=1.0,
        stem_channels=(32, 64, 128, 128),
        stem_strides=(1, 2, 1, 2),
    )
    # DeiT (Touvron et al. 2021): ImageNet normalisation; the distilled variants add a [dist] token and head.
    for size in ("Ti", "S", "B"):
        table[f"deit_{_SIZE_NAMES[size]}_patch16_224"] = _deit(f"{size}/16", 224)
        table[f"deit_{_SIZE_NAMES[size]}_distilled_patch16_224"] = _deit(f"{size}/16", 224, distilled=True)
    table["deit_base_patch16_384"] = _deit("B/16", 384)
    table["deit_base_distilled_patch16_384"] = _deit("B/16", 384, distilled=True)
    table["vit_base_r50_s16_384"] = _vit("B/1", 384, backbone_layers=(3, 4, 9))  # hybrid (Sec. 3.1), 1x1 patches
    return table


def _all_families() -> dict[str, ModelConfig]:
    table: dict[str, ModelConfig] = dict(_build_table())
    for info in sorted(pkgutil.iter_modules(config_package.__path__), key=lambda m: m.name):
        if info.name in ("base", "named"):
            continue
        module = importlib.import_module(f"vitkit.config.{info.name}")
        for name, cfg in getattr(module, "MODELS", {}).items():
            if name in table:
                raise RuntimeError(f"model name {name!r} is registered twice ({module.__name__})")
            table[name] = cfg
    return table


MODEL_CONFIGS: dict[str, ModelConfig] = _all_families()


def register_model(name: str, cfg: ModelConfig) -> None:
    """Add a named configuration (for example a hybrid or a user's own size) to the registry."""
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"register_model expects a vitkit config (ViTConfig, ...), got {type(cfg).__name__}")
    MODEL_CONFIGS[name] = cfg


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in MODEL_CONFIGS if fnmatch.fnmatch(n, pattern))


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The configuration registered as ``name`` with ``overrides`` applied (unknown fields raise)."""
    try:
        cfg = MODEL_CONFIGS[name]
    except KeyError:
        close = [n for n in MODEL_CONFIGS if name.split("_")[0] in n][:8]
        raise ValueError(f"unknown model {name!r}; see `vitkit models` or list_models(). Similar: {close}") from None
    return cfg.replace(**overrides) if overrides else cfg
