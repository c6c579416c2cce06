"""The parts every mmsegmentation head is built of: mmcv's ``ConvModule`` (conv -> BatchNorm -> ReLU), the pixel
classifier (``dropout`` + ``conv_seg``), bilinear resizing, and the check that a head got the maps it was built for.

State-dict names are mmcv's and mmseg's (``conv``, ``bn``, ``conv_seg``), so mmseg checkpoints, including the
original ViT-Adapter release files, load without renaming. Initialisation is theirs too: a ``ConvModule``'s
convolution starts Kaiming-normal (fan_out, ReLU gain; mmcv's ``kaiming_init``) with its norm at weight 1, bias 0,
and ``conv_seg`` starts Normal(0, 0.01) with bias 0 (``BaseDecodeHead``'s ``init_cfg``). Where mmseg's configs use
SyncBN, vitkit uses ``nn.BatchNorm2d``: the same numbers on one process; wrap with
``nn.SyncBatchNorm.convert_sync_batchnorm`` for multi-process training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvModule(nn.Module):
    """Conv -> BatchNorm -> ReLU (mmcv's ``ConvModule`` with ``norm_cfg=BN``). Without a norm the convolution gets a
    bias and the ``bn`` slot is an identity, so the state dict holds ``conv.*`` only (mmseg's FPN neck)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        padding: int = 0,
        dilation: int = 1,
        norm: bool = True,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else nn.Identity()
        self.activate = nn.ReLU() if act else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv's ``ConvModule.init_weights``: Kaiming-normal, fan_out, ReLU gain; norm at weight 1, bias 0."""
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        if isinstance(self.bn, nn.BatchNorm2d):
            nn.init.ones_(self.bn.weight)
            nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H', W')."""
        return self.activate(self.bn(self.conv(x)))


class DecodeHead(nn.Module):
    """What mmseg's ``BaseDecodeHead`` gives every head: ``Dropout2d`` then a 1x1 ``conv_seg`` to class logits."""

    def __init__(self, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes}: a segmentation head needs at least one class")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout}: use a probability in [0, 1)")
        self.channels = channels
        self.num_classes = num_classes
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int, zero_init: bool = False) -> None:
        """A new ``conv_seg`` for ``num_classes``: Normal(0, 0.01) as mmseg starts it, or zeros."""
        self.num_classes = num_classes
        device = self.conv_seg.weight.device if hasattr(self, "conv_seg") else None
        self.conv_seg = nn.Conv2d(self.channels, num_classes, kernel_size=1, device=device)
        if zero_init:
            nn.init.zeros_(self.conv_seg.weight)
        else:
            nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        """(B, channels, H, W) -> (B, K, H, W) logits."""
        return self.conv_seg(self.dropout(x))


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=False``, as mmseg's ADE20K heads (and transformers' UperNet) use; a map
    already of ``size`` is returned as it is."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def check_maps(owner: str, feats: Sequence[torch.Tensor], in_channels: Sequence[int]) -> None:
    """Raise when ``feats`` is not the pyramid ``owner`` was built for (count and channels per level)."""
    got = [int(f.shape[1]) if f.ndim == 4 else f"{f.ndim}-D" for f in feats]
    if got != list(in_channels):
        raise ValueError(
            f"{owner} was built for {len(in_channels)} NCHW maps with channels {list(in_channels)} but got {got}; "
            "build it with in_channels set to the backbone's pyramid channels"
        )
