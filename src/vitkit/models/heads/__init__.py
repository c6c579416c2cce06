"""Segmentation heads and necks on a pyramid of NCHW maps (strides 4, 8, 16, 32): UperNet (decode head), FCN
(auxiliary head), Semantic FPN (neck + light head) and ViTDet's simple pyramid (neck for a plain ViT). Names and
numerics follow mmsegmentation (and detectron2 for the simple pyramid), so their checkpoints load unrenamed."""

from vitkit.models.heads.conv_module import ConvModule, DecodeHead
from vitkit.models.heads.fcn import FCNHead
from vitkit.models.heads.semantic_fpn import FPN, FPNHead
from vitkit.models.heads.simple_pyramid import LayerNorm2d, SimplePyramid
from vitkit.models.heads.upernet import PPM, UPerHead

__all__ = ["FPN", "PPM", "ConvModule", "DecodeHead", "FCNHead", "FPNHead", "LayerNorm2d", "SimplePyramid", "UPerHead"]
