"""Building blocks of the Vision Transformer, one small module each."""

from vitkit.layers.attention import Attention
from vitkit.layers.block import Block
from vitkit.layers.drop import DropPath
from vitkit.layers.mlp import Mlp
from vitkit.layers.patch_embed import PatchEmbed
from vitkit.layers.pos_embed import resample_pos_embed, sincos_1d, sincos_2d

__all__ = ["Attention", "Block", "DropPath", "Mlp", "PatchEmbed", "resample_pos_embed", "sincos_1d", "sincos_2d"]
