"""The ViT-Adapter family (Chen et al., ICLR 2023): a plain ViT with a spatial prior module and interaction blocks
that give it a feature pyramid. A backbone: it segments inside a segmentor (``upernet_vit_adapter_*``), and starts
from a plain ViT's weights (DeiT, AugReg, timm, an MAE encoder) as the paper does."""

from __future__ import annotations

from vitkit.config.vit_adapter import ViTAdapterConfig
from vitkit.families.base import Family, State
from vitkit.models.vit_adapter import ViTAdapter
from vitkit.weights.errors import CheckpointError
from vitkit.weights.vit_adapter import adapt_vit_adapter, vit_to_adapter


def _from_vit(state: State, src, dst: ViTAdapterConfig) -> State:
    if src.family != "vit":
        raise CheckpointError(f"a ViT-Adapter starts from a plain ViT's weights, not a {src.family!r} model's")
    return vit_to_adapter(state, dst)


FAMILY = Family(
    name="vit_adapter",
    config_class=ViTAdapterConfig,
    model_class=ViTAdapter,
    task=None,
    block_pattern=r"blocks\.\d+",
    adapt=adapt_vit_adapter,
    init_from=_from_vit,
    refusals={"*": "a ViT-Adapter backbone has no visualisation yet; draw its ViT's with a plain ViT checkpoint"},
)
