"""Semantic FPN (Kirillov et al. 2019, "Panoptic Feature Pyramid Networks", semantic branch): the light head for
small budgets, as mmsegmentation builds it from two parts, the ``FPN`` neck and the ``FPNHead`` decode head.

    FPN neck   :  1x1 ``lateral_convs`` (conv with bias, no norm or ReLU) to a common width (256),
                  top-down  lateral_{i-1} += nearest(lateral_i),  3x3 ``fpn_convs``                (Lin et al. 2017)
    FPNHead    :  per level, log2(stride / 4) 3x3 ConvModules (at least one), each followed by a 2x bilinear
                  upsample when the level is coarser than stride 4 (``scale_heads``); summed at stride 4
               -> Dropout2d(0.1) -> 1x1 ``conv_seg``

At mmseg's widths (FPN 256, head 128) the pair costs about 4.2M parameters for a 192-wide pyramid, against 28M for
UperNet at width 512. In a segmentor the two sit at ``neck.*`` and ``decode_head.*``, the names mmseg's Semantic FPN
checkpoints use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.models.heads.conv_module import ConvModule, DecodeHead, check_maps, resize


class FPN(nn.Module):
    """mmseg's ``FPN`` neck with ``num_outs`` equal to the input count (no extra levels), no norm, no activation.
    Convolutions start Xavier-uniform with bias 0 (its ``init_cfg``), replacing ``ConvModule``'s Kaiming start."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.in_channels = tuple(int(c) for c in in_channels)
        self.out_channels = out_channels
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1, norm=False, act=False) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, norm=False, act=False) for _ in in_channels
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """[(B, C_i, H_i, W_i)] -> [(B, out_channels, H_i, W_i)]."""
        check_maps("FPN", feats, self.in_channels)
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:])
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals)]


class Upsample2x(nn.Module):
    """Bilinear 2x upsampling to exactly (2H, 2W) (mmseg's ``Upsample(scale_factor=2)``); holds no weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, 2H, 2W)."""
        return resize(x, (2 * x.shape[2], 2 * x.shape[3]))


class FPNHead(DecodeHead):
    """mmseg's ``FPNHead``: logits at the finest input's stride.

    Args:
        in_channels: channels of each (neck output) map, finest first.
        num_classes: K, the logits' channels.
        channels: width of the scale heads (128 in mmseg's Semantic FPN configs).
        feature_strides: stride of each map, powers of two with the finest first; they set each level's depth.
        dropout: ``Dropout2d`` before ``conv_seg``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 128,
        feature_strides: Sequence[int] = (4, 8, 16, 32),
        dropout: float = 0.1,
    ) -> None:
        super().__init__(channels, num_classes, dropout)
        self.in_channels = tuple(int(c) for c in in_channels)
        strides = tuple(int(s) for s in feature_strides)
        if len(strides) != len(self.in_channels) or min(strides, default=0) != strides[0]:
            raise ValueError(
                f"feature_strides {strides}: give one stride per map of in_channels {self.in_channels}, finest first"
            )
        self.feature_strides = strides
        self.scale_heads = nn.ModuleList()
        for c_in, stride in zip(self.in_channels, strides):
            layers: list[nn.Module] = []
            for k in range(max(1, int(math.log2(stride) - math.log2(strides[0])))):
                layers.append(ConvModule(c_in if k == 0 else channels, channels, 3, padding=1))
                if stride != strides[0]:
                    layers.append(Upsample2x())
            self.scale_heads.append(nn.Sequential(*layers))

    def forward_features(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """[(B, C_i, H_i, W_i)] -> (B, channels, H_0, W_0): the scale heads summed at the finest map's size."""
        check_maps("FPNHead", feats, self.in_channels)
        out = self.scale_heads[0](feats[0])
        for head, x in zip(self.scale_heads[1:], feats[1:]):
            out = out + resize(head(x), out.shape[2:])
        return out

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """[(B, C_i, H_i, W_i)] -> (B, K, H_0, W_0) logits."""
        return self.cls_seg(self.forward_features(feats))
