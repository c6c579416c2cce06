"""UperNet's decode head (Xiao et al. 2018, "Unified Perceptual Parsing"), as mmsegmentation's ``UPerHead``.

    last map   -> pyramid pooling at scales 1, 2, 3, 6 (PSPNet), each 1x1 ConvModule, upsampled and concatenated
               with the map itself -> 3x3 ``bottleneck``                                   (the top lateral)
    other maps -> 1x1 ``lateral_convs``
    top-down   :  lateral_{i-1} += bilinear(lateral_i)            (FPN, Lin et al. 2017; align_corners=False)
    outputs    :  3x3 ``fpn_convs`` on every lateral but the top, all upsampled to the stride-4 map, concatenated
               -> 3x3 ``fpn_bottleneck`` -> Dropout2d(0.1) -> 1x1 ``conv_seg``

This is the head of the ADE20K UperNet configs that ViT-Adapter, Swin and BEiT report; its state-dict names are
mmseg's, so ``decode_head.*`` of their release files loads unrenamed (transformers' names: weights/upernet_hf.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vitkit.models.heads.conv_module import ConvModule, DecodeHead, check_maps, resize


class PPM(nn.ModuleList):
    """Pyramid pooling (PSPNet, Zhao et al. 2017): average-pool to s x s, 1x1 ConvModule, upsample back.
    Each scale is ``Sequential(AdaptiveAvgPool2d, ConvModule)``, hence the names ``psp_modules.{i}.1.conv``."""

    def __init__(self, pool_scales: Sequence[int], in_channels: int, channels: int) -> None:
        super().__init__(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(in_channels, channels, 1)) for s in pool_scales
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) -> one (B, channels, H, W) map per scale."""
        return [resize(branch(x), x.shape[2:]) for branch in self]


class UPerHead(DecodeHead):
    """mmseg's ``UPerHead``: maps at strides 4, 8, 16, 32 -> logits at stride 4.

    Args:
        in_channels: channels of each input map, finest first (e.g. ``[96, 192, 384, 768]`` for Swin-T).
        num_classes: K, the logits' channels.
        channels: width of every internal map (512 in the ADE20K configs).
        pool_scales: output sizes of the pyramid pooling on the last map.
        dropout: ``Dropout2d`` before ``conv_seg``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__(channels, num_classes, dropout)
        if len(in_channels) < 1 or not pool_scales:
            raise ValueError(
                f"UPerHead needs at least one input map and one pool scale; got {in_channels}, {pool_scales}"
            )
        self.in_channels = tuple(int(c) for c in in_channels)
        self.pool_scales = tuple(int(s) for s in pool_scales)
        top = self.in_channels[-1]
        self.psp_modules = PPM(self.pool_scales, top, channels)
        self.bottleneck = ConvModule(top + len(self.pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in self.in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, padding=1) for _ in self.in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(self.in_channels) * channels, channels, 3, padding=1)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The top lateral: (B, C_top, h, w) -> (B, channels, h, w)."""
        return self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1))

    def forward_features(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """[(B, C_i, H_i, W_i)] -> (B, channels, H_0, W_0), the map ``conv_seg`` classifies."""
        check_maps("UPerHead", feats, self.in_channels)
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, feats)] + [self.psp_forward(feats[-1])]
        for i in range(len(laterals) - 1, 0, -1):  # top-down, not in place
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        size = outs[0].shape[2:]
        outs = [outs[0]] + [resize(x, size) for x in outs[1:]]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """[(B, C_i, H_i, W_i)] -> (B, K, H_0, W_0) logits at the finest input's stride (4)."""
        return self.cls_seg(self.forward_features(feats))
