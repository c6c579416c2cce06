"""ViT-Adapter (Chen et al., ICLR 2023): a plain ViT turned into a 1/4, 1/8, 1/16, 1/32 pyramid for dense heads.

    c1..c4 = SPM(x)                               convolutional spatial prior at strides 4, 8, 16, 32 (Sec. 3.2)
    F_sp   = [c2; c3; c4] + level embeddings      adapter tokens of three levels
    for each interaction i (blocks first_i..last_i):
        F_vit = F_vit + gamma * DeformAttn(LN(F_vit), LN(F_sp))      injector (Eq. 1): ViT tokens query the prior
        F_vit = blocks(F_vit)
        F_sp  = F_sp + DeformAttn(LN(F_sp), LN(F_vit))               extractor (Eq. 2): the prior queries the ViT
        F_sp  = F_sp + ConvFFN(LN(F_sp))                             (Eq. 3; a depthwise 3x3 conv on each level)
    f1 = BN(up(c2) + c1 + resize(F_vit^1)), f2 = BN(c2 + ...), ...   the output pyramid (Fig. 3)

Unlike the original (mmcv, a compiled CUDA op, SyncBatchNorm), this runs on any device in plain PyTorch with
BatchNorm. The ViT part is vitkit's own layers (:class:`~vitkit.layers.block.Block`, ``PatchEmbed``) under timm's
names at the top level (``patch_embed.proj``, ``pos_embed``, ``blocks.{i}``), rather than a held
``VisionTransformer``: such a model would carry a class token, a final LayerNorm and a head the adapter never uses
(parameters the original does not have), and its forward runs all blocks at once where the adapter interleaves
them. A vitkit or timm ViT's tensors therefore load unchanged (``vitkit.weights.vit_adapter.vit_to_adapter``), and
so do the original's, whose key names are the same except for layer scale (``gamma1`` -> ``ls1.gamma``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vitkit.config.vit_adapter import STRIDES, ViTAdapterConfig, nearest_multiple
from vitkit.layers.block import Block
from vitkit.layers.deform_attn import MSDeformAttn
from vitkit.layers.drop import DropPath, drop_path_rates
from vitkit.layers.inputs import check_image_batch
from vitkit.layers.patch_embed import PatchEmbed
from vitkit.models.features import chosen_indices
from vitkit.models.vit import trunc_normal_

Grid = tuple[int, int]


def resample_grid(table: torch.Tensor, old: Grid, new: Grid) -> torch.Tensor:
    """(1, gh*gw, D) position table on grid ``old`` -> (1, new_h*new_w, D), by plain bicubic interpolation
    (align_corners=False, no antialias): what the original does at every forward (``_get_pos_embed``) and when it
    loads a checkpoint of another resolution (mmcv_custom/checkpoint.py)."""
    if tuple(old) == tuple(new):
        return table
    D = table.shape[-1]
    grid = table.reshape(1, old[0], old[1], D).permute(0, 3, 1, 2).float()  # (1, D, gh, gw)
    grid = F.interpolate(grid, size=new, mode="bicubic", align_corners=False)
    return grid.flatten(2).transpose(1, 2).to(table.dtype)


def grid_centres(grids: list[Grid], device: torch.device) -> torch.Tensor:
    """(1, sum h*w, 1, 2) (x, y) centres of every cell of the grids, in [0, 1] units of its own grid."""
    points = []
    for h, w in grids:
        y, x = torch.meshgrid(
            (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h,
            (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w,
            indexing="ij",
        )
        points.append(torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1))
    return torch.cat(points)[None, :, None]


class DeformInputs(NamedTuple):
    """Where deformable queries look: reference points (1, Lq, 1, 2), the keys' level shapes (H, W) as Python ints
    (known from the input's size, so tracing and export see constants), and where each level starts."""

    reference_points: torch.Tensor
    spatial_shapes: list[Grid]
    level_start_index: list[int]


def _starts(shapes: list[Grid]) -> list[int]:
    return [sum(h * w for h, w in shapes[:i]) for i in range(len(shapes))]


def deform_inputs(levels: list[Grid], grid: Grid, device: torch.device) -> tuple[DeformInputs, DeformInputs]:
    """(injector's, extractor's) inputs: ViT tokens at their centres query the three adapter levels; the adapter
    tokens of every level query the ViT's single 1/16 level at theirs."""
    inject = DeformInputs(grid_centres([grid], device), list(levels), _starts(levels))
    extract = DeformInputs(grid_centres(levels, device), [grid], [0])
    return inject, extract


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """A ResNet-like stem to 1/4, then strided 3x3 convs to 1/8, 1/16, 1/32, each projected to the ViT's width."""

    def __init__(self, in_chans: int, inplanes: int, embed_dim: int) -> None:
        super().__init__()
        c = inplanes
        self.stem = nn.Sequential(
            *_conv_bn_relu(in_chans, c, 2), *_conv_bn_relu(c, c, 1), *_conv_bn_relu(c, c, 1), nn.MaxPool2d(3, 2, 1)
        )
        self.conv2 = nn.Sequential(*_conv_bn_relu(c, 2 * c, 2))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * c, 4 * c, 2))
        self.conv4 = nn.Sequential(*_conv_bn_relu(4 * c, 4 * c, 2))
        self.fc1, self.fc2, self.fc3, self.fc4 = (nn.Conv2d(n, embed_dim, 1) for n in (c, 2 * c, 4 * c, 4 * c))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, C, H, W) -> c1 (B, D, H/4, W/4) as a map; c2, c3, c4 (B, H/s * W/s, D) as tokens (s = 8, 16, 32)."""
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        tokens = [fc(c).flatten(2).transpose(1, 2) for fc, c in ((self.fc2, c2), (self.fc3, c3), (self.fc4, c4))]
        return (self.fc1(c1), *tokens)


class DWConv(nn.Module):
    """A depthwise 3x3 conv over each level's tokens, laid out as their maps (the ConvFFN's spatial mixing)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, levels: list[Grid]) -> torch.Tensor:
        """(B, sum h*w, C) -> same; each level's tokens convolved as a (B, C, h, w) map."""
        B, _, C = x.shape
        parts = x.split([h * w for h, w in levels], dim=1)
        out = [self.dwconv(p.transpose(1, 2).reshape(B, C, h, w)).flatten(2) for p, (h, w) in zip(parts, levels)]
        return torch.cat(out, dim=2).transpose(1, 2)


class ConvFFN(nn.Module):
    """Linear -> depthwise 3x3 conv per level -> GELU -> Linear (Eq. 3)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, levels: list[Grid]) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), levels)))


class Injector(nn.Module):
    """ViT tokens gather the spatial prior: F_vit + gamma * DeformAttn(LN(F_vit), LN(F_sp)), gamma from
    ``init_values`` (0: the pre-trained ViT's features are untouched at the start of fine-tuning)."""

    def __init__(self, cfg: ViTAdapterConfig) -> None:
        super().__init__()
        D = cfg.embed_dim
        self.query_norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.feat_norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.attn = MSDeformAttn(
            D, n_levels=3, n_heads=cfg.deform_num_heads, n_points=cfg.n_points, ratio=cfg.deform_ratio
        )
        self.gamma = nn.Parameter(torch.full((D,), float(cfg.init_values)))

    def forward(self, query: torch.Tensor, feat: torch.Tensor, inputs: DeformInputs) -> torch.Tensor:
        """(B, N, D) ViT tokens, (B, N_sp, D) adapter tokens -> (B, N, D)."""
        attn = self.attn(self.query_norm(query), inputs.reference_points, self.feat_norm(feat), *inputs[1:])
        return query + self.gamma * attn


class Extractor(nn.Module):
    """The spatial prior gathers the ViT's features: F_sp + DeformAttn(LN(F_sp), LN(F_vit)), then the ConvFFN."""

    def __init__(self, cfg: ViTAdapterConfig) -> None:
        super().__init__()
        D = cfg.embed_dim
        self.query_norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.feat_norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.attn = MSDeformAttn(
            D, n_levels=1, n_heads=cfg.deform_num_heads, n_points=cfg.n_points, ratio=cfg.deform_ratio
        )
        self.ffn = ConvFFN(D, int(D * cfg.cffn_ratio)) if cfg.with_cffn else None
        self.ffn_norm = nn.LayerNorm(D, eps=cfg.norm_eps) if cfg.with_cffn else None
        self.drop_path = DropPath(cfg.drop_path_rate)  # the original gives every extractor the full rate

    def forward(self, query: torch.Tensor, feat: torch.Tensor, inputs: DeformInputs, levels: list[Grid]):
        """(B, N_sp, D) adapter tokens, (B, N, D) ViT tokens -> (B, N_sp, D)."""
        query = query + self.attn(self.query_norm(query), inputs.reference_points, self.feat_norm(feat), *inputs[1:])
        if self.ffn is not None:
            query = query + self.drop_path(self.ffn(self.ffn_norm(query), levels))
        return query


def _call(module: nn.Module, checkpointed: bool, *args):
    """``module(*args)``, recomputed in the backward pass instead of stored when ``checkpointed``."""
    if checkpointed and torch.is_grad_enabled():
        return checkpoint(module, *args, use_reentrant=False)
    return module(*args)


class InteractionBlock(nn.Module):
    """Injector, the ViT blocks it precedes, extractor (and in the last interaction two extra extractors)."""

    def __init__(self, cfg: ViTAdapterConfig, extra_extractor: bool) -> None:
        super().__init__()
        self.injector = Injector(cfg)
        self.extractor = Extractor(cfg)
        self.extra_extractors = nn.Sequential(Extractor(cfg), Extractor(cfg)) if extra_extractor else None

    def forward(self, x, c, blocks, inject: DeformInputs, extract: DeformInputs, grid: Grid, levels, checkpointed):
        """(B, N, D) ViT tokens on ``grid``, (B, N_sp, D) adapter tokens on ``levels`` -> both updated."""
        x = _call(self.injector, checkpointed, x, c, inject)
        for block in blocks:
            x = _call(block, checkpointed, x, False, grid)
        for extractor in [self.extractor, *(self.extra_extractors or ())]:
            c = _call(extractor, checkpointed, c, x, extract, levels)
        return x, c


class ViTAdapter(nn.Module):
    """ViT-Adapter backbone: ``forward(x)`` -> four (B, D, H/s, W/s) maps for s = 4, 8, 16, 32."""

    def __init__(self, cfg: ViTAdapterConfig | None = None, **changes) -> None:
        super().__init__()
        cfg = cfg or ViTAdapterConfig()
        self.cfg = cfg = cfg.replace(**changes) if changes else cfg
        D = cfg.embed_dim
        self.grad_checkpointing = False
        # The ViT part, under timm's names; the position table keeps the class token's row (unused), as the original.
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, D)
        gh, gw = cfg.pretrain_grid
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + gh * gw, D))
        rates = drop_path_rates(cfg.drop_path_rate, cfg.depth)
        self.blocks = nn.Sequential(
            *[
                Block(
                    D,
                    cfg.num_heads,
                    cfg.mlp_dim,
                    qkv_bias=cfg.qkv_bias,
                    norm_eps=cfg.norm_eps,
                    drop_path=rate,
                    layer_scale=cfg.layer_scale,
                    window_size=cfg.window_size if windowed else None,
                )
                for rate, windowed in zip(rates, cfg.windowed)
            ]
        )
        # The adapter.
        self.level_embed = nn.Parameter(torch.zeros(3, D))
        self.spm = SpatialPriorModule(cfg.in_chans, cfg.conv_inplane, D)
        last = len(cfg.interaction_indexes) - 1
        self.interactions = nn.Sequential(
            *[InteractionBlock(cfg, cfg.use_extra_extractor and i == last) for i in range(last + 1)]
        )
        self.up = nn.ConvTranspose2d(D, D, 2, 2)
        self.norm1, self.norm2, self.norm3, self.norm4 = (nn.BatchNorm2d(D) for _ in STRIDES)
        self.feature_info = [dict(num_chs=D, reduction=s, module=f"norm{i + 1}") for i, s in enumerate(STRIDES)]
        self.init_weights()

    # ----------------------------------------------------------------------------------------------- set-up
    @torch.no_grad()
    def init_weights(self) -> None:
        """The ViT part as vitkit's ViT (the original leaves it to the pre-trained checkpoint); the adapter as the
        original's ``_init_weights``: truncated-normal Linear weights (std 0.02, timm's absolute +-2 bounds), He-normal
        convs (fan-out), unit norms; then every deformable attention's own reset, and a N(0, 1) level embedding."""
        trunc_normal_(self.pos_embed, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        proj = self.patch_embed.proj
        fan_in = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
        trunc_normal_(proj.weight, std=math.sqrt(1.0 / fan_in) / 0.87962566)  # LeCun normal, as vitkit's ViT
        nn.init.zeros_(proj.bias)
        for part in (self.up, self.spm, self.interactions):
            for module in part.modules():
                if isinstance(module, nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)
                elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                    fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                    nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module._reset_parameters()
        nn.init.normal_(self.level_embed)

    def no_weight_decay(self) -> set[str]:
        """The position table and the level embedding (norms, biases and gammas are 1-D: skipped by rule)."""
        return {"pos_embed", "level_embed"}

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Layer-wise learning-rate decay groups, as the original's LayerDecayOptimizerConstructor: the embedding,
        one group per ViT block, and the adapter (unmatched) with the last, full rate."""
        return {"stem": r"^(?:pos_embed|patch_embed)", "blocks": r"^blocks\.(\d+)"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each ViT block, injector and extractor in the backward pass instead of storing activations
        (the original's ``with_cp``). State-dict names do not change."""
        self.grad_checkpointing = enable

    # --------------------------------------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        check_image_batch(x, self.cfg.in_chans)
        H, W = x.shape[-2:]
        if H % 32 or W % 32:
            raise ValueError(
                f"image size {H}x{W} is not divisible by 32, the stride of ViT-Adapter's coarsest level; resize or "
                f"pad to e.g. {nearest_multiple(H, 32)}x{nearest_multiple(W, 32)}"
            )

    def position_table(self, grid: Grid) -> torch.Tensor:
        """(1, gh*gw, D) position embeddings of the patch tokens, resampled from the pre-training grid."""
        return resample_grid(self.pos_embed[:, 1:], self.cfg.pretrain_grid, grid)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, H, W) -> [(B, D, H/4, W/4), (B, D, H/8, W/8), (B, D, H/16, W/16), (B, D, H/32, W/32)]."""
        self._check_input(x)
        B, D = x.shape[0], self.cfg.embed_dim
        grid = (x.shape[-2] // 16, x.shape[-1] // 16)
        levels = [(2 * grid[0], 2 * grid[1]), grid, (grid[0] // 2, grid[1] // 2)]  # strides 8, 16, 32
        inject, extract = deform_inputs(levels, grid, x.device)

        c1, c2, c3, c4 = self.spm(x)
        c = torch.cat([c2 + self.level_embed[0], c3 + self.level_embed[1], c4 + self.level_embed[2]], dim=1)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.position_table(grid)  # (B, N, D)
        vit_maps = []
        for interaction, (first, last) in zip(self.interactions, self.cfg.interaction_indexes):
            blocks = self.blocks[first : last + 1]
            tokens, c = interaction(tokens, c, blocks, inject, extract, grid, levels, self.grad_checkpointing)
            vit_maps.append(tokens.transpose(1, 2).reshape(B, D, *grid))

        # (B, N_sp, D) -> the three levels as maps; the 1/4 level is the upsampled 1/8 one plus the stem's c1.
        c2, c3, c4 = (
            t.transpose(1, 2).reshape(B, D, h, w) for t, (h, w) in zip(c.split([h * w for h, w in levels], 1), levels)
        )
        c1 = self.up(c2) + c1
        maps = [c1, c2, c3, c4]
        if self.cfg.add_vit_feature:  # the ViT's tokens after interaction i, resized to level i (x4, x2, x1, x0.5)
            for i, (vit_map, scale) in enumerate(zip(vit_maps, (4, 2, 1, 0.5))):
                resized = (
                    vit_map
                    if scale == 1
                    else F.interpolate(vit_map, scale_factor=scale, mode="bilinear", align_corners=False)
                )
                maps[i] = maps[i] + resized
        return [norm(m) for norm, m in zip((self.norm1, self.norm2, self.norm3, self.norm4), maps)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        *,
        norm: bool = True,
        stop_early: bool = False,
        intermediates_only: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]] | list[torch.Tensor]:
        """The pyramid levels picked by ``indices`` (None: all four, an int n: the last n), as every vitkit
        backbone offers them; ``(last level, [levels])`` unless ``intermediates_only``. Every level needs all
        interactions, so ``stop_early`` saves nothing, and the levels' BatchNorms always apply (``norm``)."""
        maps = self.forward_features(x)
        chosen = [maps[i] for i in chosen_indices(indices, len(maps))]
        return chosen if intermediates_only else (maps[-1], chosen)
