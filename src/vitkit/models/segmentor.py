"""A semantic segmentation model: backbone -> pyramid -> decode head (+ auxiliary head), mmseg's ``EncoderDecoder``.

    maps = backbone.forward_intermediates(x, out_indices)     any family's NCHW maps
    pyramid = neck(maps)                                      four levels, strides 4, 8, 16, 32
    logits = resize(decode_head(pyramid), H x W)              (B, K, H, W), bilinear, align_corners=False
    aux = resize(auxiliary_head(pyramid), H x W)              only when asked: model(x, aux=True)

State-dict names are mmseg's (``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``), so release files map onto
it with the backbone's own renaming only. The backbone is built by its family and handed in.
"""

from __future__ import annotations

import torch
from torch import nn

from vitkit.config.segmentor import SegmentorConfig
from vitkit.layers.inputs import check_image_batch
from vitkit.models.heads import FPN, FCNHead, FPNHead, SimplePyramid, UPerHead
from vitkit.models.heads.conv_module import resize
from vitkit.models.heads.simple_pyramid import LayerNorm2d


class StageNorms(nn.ModuleList):
    """A LayerNorm over the channels of each map (mmseg's and transformers' Swin backbones end each stage so)."""

    def __init__(self, channels: list[int], eps: float) -> None:
        super().__init__(LayerNorm2d(c, eps=eps) for c in channels)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [norm(m) for norm, m in zip(self, maps)]


class Segmentor(nn.Module):
    """``forward(x) -> logits (B, K, H, W)`` at the input's size; ``forward(x, aux=True) -> (logits, aux logits)``."""

    def __init__(self, cfg: SegmentorConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.backbone = backbone
        infos = list(backbone.feature_info)
        indices = cfg.pyramid_indices
        chosen = [infos[i % len(infos)] for i in indices] if indices is not None else infos[-4:]
        self._indices = [i % len(infos) for i in indices] if indices is not None else None
        channels = [info["num_chs"] for info in chosen]
        strides = [info["reduction"] for info in chosen]
        if cfg.neck == "simple_pyramid":
            if len(channels) != 1:
                raise ValueError(f"the simple pyramid takes one map (out_indices=(-1,)), got {len(channels)}")
            self.neck: nn.Module = SimplePyramid(channels[0], cfg.neck_channels, in_stride=strides[0])
            channels, strides = list(self.neck.out_channels), list(self.neck.strides)
        elif cfg.neck == "norms":
            self.neck = StageNorms(channels, getattr(backbone.cfg, "norm_eps", 1e-5))
            if isinstance(getattr(backbone, "norm", None), nn.LayerNorm):
                backbone.norm = nn.Identity()  # the per-stage norms replace the classifier's final one, unused here
        else:
            self.neck = nn.Identity()
        if len(channels) != 4:
            raise ValueError(f"the heads take a four-level pyramid; the backbone gave {len(channels)} maps")
        if cfg.head == "upernet":
            self.decode_head: nn.Module = UPerHead(
                channels, cfg.num_classes, cfg.channels, cfg.pool_scales, cfg.dropout
            )
        else:
            self.fpn = FPN(channels, cfg.neck_channels)
            self.decode_head = FPNHead([cfg.neck_channels] * 4, cfg.num_classes, cfg.channels, strides, cfg.dropout)
        self.auxiliary_head = (
            FCNHead(
                channels,
                cfg.num_classes,
                cfg.aux_channels,
                cfg.aux_index,
                cfg.aux_num_convs,
                cfg.aux_concat_input,
                dropout=cfg.dropout,
            )  # fmt: skip
            if cfg.aux_head
            else None
        )
        self.strides = strides

    # ------------------------------------------------------------------------------------------- method set
    @property
    def feature_info(self) -> list[dict]:
        return [dict(num_chs=c, reduction=s, module=f"pyramid.{i}") for i, (c, s) in
                enumerate(zip(self.decode_head.in_channels, self.strides))]  # fmt: skip

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}

    def group_matcher(self, coarse: bool = False) -> dict:
        """The backbone's groups (for layer-wise learning-rate decay); the necks and heads form the last group."""
        inner = self.backbone.group_matcher(coarse)
        return {k: _prefixed(v) for k, v in inner.items()}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    def reset_classifier(self, num_classes: int, zero_init: bool = False) -> None:
        """New ``conv_seg`` layers for ``num_classes`` (mmseg's normal(0, 0.01) start, or zeros)."""
        self.num_classes = num_classes
        for head in (self.decode_head, self.auxiliary_head):
            if head is not None:
                head.reset_classifier(num_classes, zero_init)

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) -> four NCHW maps at strides 4, 8, 16, 32."""
        check_image_batch(x, self.cfg.in_chans)
        single = isinstance(self.neck, SimplePyramid)  # a plain ViT's last map, through its final LayerNorm
        maps = self.backbone.forward_intermediates(x, self._indices, norm=single, stop_early=True,
                                                   intermediates_only=True)  # fmt: skip
        maps = self.neck(maps[0] if single else maps)
        return self.fpn(maps) if hasattr(self, "fpn") else maps

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.pyramid(x)

    def forward_intermediates(self, x: torch.Tensor, indices=None, *, intermediates_only: bool = False, **unused):
        maps = self.pyramid(x)
        chosen = maps if indices is None else [maps[i] for i in ([indices] if isinstance(indices, int) else indices)]
        return chosen if intermediates_only else (maps[-1], chosen)

    def forward_head(self, maps: list[torch.Tensor], size: tuple[int, int] | None = None) -> torch.Tensor:
        logits = self.decode_head(maps)
        return logits if size is None else resize(logits, size)

    def forward(self, x: torch.Tensor, aux: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        size = (x.shape[-2], x.shape[-1])
        maps = self.pyramid(x)
        logits = resize(self.decode_head(maps), size)
        if aux and self.auxiliary_head is not None:
            return logits, resize(self.auxiliary_head(maps), size)
        return logits


def _prefixed(pattern):
    if isinstance(pattern, str):
        return "^backbone\\." + pattern.lstrip("^")
    return [(_prefixed(p), order) for p, order in pattern]
