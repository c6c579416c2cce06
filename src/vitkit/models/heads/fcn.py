"""The FCN head (Long et al. 2015) as mmsegmentation's ``FCNHead``, in the role the ADE20K UperNet configs give it:
the auxiliary head, a deep-supervision loss on the stride-16 map (weight 0.4 in those configs) that is dropped at
inference.

    map in_index -> ``num_convs`` 3x3 ConvModules (``convs.{i}``) [-> concat with the input -> ``conv_cat``]
                 -> Dropout2d(0.1) -> 1x1 ``conv_seg``

The ADE20K configs use ``in_index=2``, ``channels=256``, ``num_convs=1``, ``concat_input=False``; mmseg's own
defaults (``num_convs=2``, ``concat_input=True``) are one argument away. State-dict names are mmseg's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vitkit.models.heads.conv_module import ConvModule, DecodeHead, check_maps


class FCNHead(DecodeHead):
    """mmseg's ``FCNHead`` on one map of the pyramid; logits come at that map's stride (16 for ``in_index=2``), and
    the segmentor resizes them to the image as it does the decode head's.

    Args:
        in_channels: channels of each map of the pyramid the head is given (it reads ``in_index``).
        num_classes: K, the logits' channels.
        channels: width of the convolutions (256 in the ADE20K configs).
        in_index: which map to read.
        num_convs: 3x3 ConvModules before the classifier; 0 passes the map through (then its channels must equal
            ``channels``).
        concat_input: concatenate the input map with the convolutions' output and fuse them with ``conv_cat``.
        kernel_size, dilation: of ``convs`` (``conv_cat`` is never dilated, as in mmseg).
        dropout: ``Dropout2d`` before ``conv_seg``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 256,
        in_index: int = 2,
        num_convs: int = 1,
        concat_input: bool = False,
        kernel_size: int = 3,
        dilation: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(channels, num_classes, dropout)
        self.in_channels = tuple(int(c) for c in in_channels)
        if not -len(self.in_channels) <= in_index < len(self.in_channels):
            raise ValueError(f"in_index={in_index} but the pyramid has {len(self.in_channels)} maps; pick one of them")
        self.in_index = in_index
        c_in = self.in_channels[in_index]
        if num_convs < 0 or (num_convs == 0 and c_in != channels):
            raise ValueError(
                f"num_convs={num_convs} on a {c_in}-channel map with channels={channels}: use num_convs >= 1, or 0 "
                "only when the map already has `channels` channels"
            )
        padding = kernel_size // 2 * dilation
        convs = [ConvModule(c_in if i == 0 else channels, channels, kernel_size, padding=padding, dilation=dilation)
                 for i in range(num_convs)]  # fmt: skip
        self.convs = nn.Sequential(*convs) if convs else nn.Identity()
        self.concat_input = concat_input
        if concat_input:
            self.conv_cat = ConvModule(c_in + channels, channels, kernel_size, padding=kernel_size // 2)

    def forward_features(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """[(B, C_i, H_i, W_i)] -> (B, channels, H_j, W_j) for j = ``in_index``."""
        check_maps("FCNHead", feats, self.in_channels)
        x = feats[self.in_index]
        out = self.convs(x)
        return self.conv_cat(torch.cat([x, out], dim=1)) if self.concat_input else out

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """[(B, C_i, H_i, W_i)] -> (B, K, H_j, W_j) logits on map j = ``in_index``."""
        return self.cls_seg(self.forward_features(feats))
