"""Swin Transformer (Liu et al. 2021), readable top to bottom.

    z_0 = LN(patches(x) E)                                        (Sec. 3.1, patch partition + linear embedding)
    per stage s:  z = PatchMerging(z) for s > 0                   (2x2 neighbours -> LN -> Linear 4C -> 2C)
                  z'_l = W-MSA(LN(z_{l-1})) + z_{l-1};  z_l = MLP(LN(z'_l)) + z'_l          (Eq. 3, even l)
                  z'_l = SW-MSA(LN(z_{l-1})) + z_{l-1}; z_l = MLP(LN(z'_l)) + z'_l          (Eq. 3, odd l)
    y = head(mean over positions of LN(z_L))

Tokens stay on their 2D map, (B, H, W, C), as in timm. State-dict names are timm's current layout
(``layers.{s}.downsample`` opens stage s; ``head.fc``), so timm weights load without renaming; buffers that the
window size or the image size fix (``relative_position_index``, ``attn_mask``) are not saved.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vitkit.config.swin import SwinConfig, stage_window
from vitkit.layers.drop import DropPath, drop_path_rates
from vitkit.layers.inputs import check_image_batch
from vitkit.layers.mlp import Mlp
from vitkit.layers.patch_embed import PatchEmbed as LinearPatchEmbed
from vitkit.layers.window_attention import WindowAttention, shifted_window_mask, window_partition, window_reverse
from vitkit.models.features import chosen_indices


def trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """Normal(0, std) truncated at two standard deviations, as the original code initialises."""
    return nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


class PatchEmbed(LinearPatchEmbed):
    """Patch partition + linear embedding (ViT's strided convolution), then LayerNorm."""

    def __init__(self, patch_size: tuple[int, int], in_chans: int, dim: int, norm_eps: float) -> None:
        super().__init__(patch_size, in_chans, dim)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H/P, W/P, D)."""
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """Concatenate each 2x2 neighbourhood (order (0,0), (1,0), (0,1), (1,1) as the original), LN, Linear 4C->2C."""

    def __init__(self, dim: int, norm_eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H/2, W/2, 2C)."""
        B, H, W, C = x.shape
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).reshape(B, H // 2, W // 2, 4 * C)
        return self.reduction(self.norm(x))


class SwinBlock(nn.Module):
    """One Swin block: (shifted-)window attention and an MLP, each pre-LN with a residual (paper Eq. 3)."""

    def __init__(self, cfg: SwinConfig, dim: int, heads: int, grid: tuple[int, int], shifted: bool, drop_path: float):
        super().__init__()
        self.window = cfg.window_size
        self.always_shift = cfg.always_shift
        self.shifted = shifted  # odd blocks of a stage; the shift is M/2 unless one window covers the map
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = WindowAttention(dim, heads, self.window, cfg.qkv_bias, cfg.attn_drop_rate, cfg.proj_drop_rate)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), act_layer=cfg.act_layer, drop=cfg.proj_drop_rate)
        self.drop_path2 = DropPath(drop_path)
        self.grid = grid
        self.register_buffer("attn_mask", shifted_window_mask(*grid, self.window, self.shift(grid)), persistent=False)

    def shift(self, grid: tuple[int, int]) -> int:
        """Cyclic shift used on a ``grid`` feature map: M/2 for shifted blocks, 0 when one window covers it."""
        return stage_window(grid, self.window, self.always_shift)[1] if self.shifted else 0

    def mask(self, grid: tuple[int, int], device: torch.device) -> torch.Tensor | None:
        if grid == self.grid:
            return self.attn_mask
        return shifted_window_mask(*grid, self.window, self.shift(grid), device=device)

    def attention(self, x: torch.Tensor, return_attention: bool = False):
        """(B, H, W, C) -> (B, H, W, C): roll by -M/2 (SW-MSA), attend per window, unroll."""
        B, H, W, C = x.shape
        shift = self.shift((H, W))
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        out = self.attn(window_partition(x, self.window), self.mask((H, W), x.device), return_attention)
        out, attn = out if return_attention else (out, None)
        x = window_reverse(out, self.window, H, W)
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        return (x, attn) if return_attention else x

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """(B, H, W, C) -> (B, H, W, C); with ``return_attention`` also (B * nW, heads, M*M, M*M) probabilities."""
        y = self.attention(self.norm1(x), return_attention)
        y, attn = y if return_attention else (y, None)
        x = x + self.drop_path1(y)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return (x, attn) if return_attention else x


class SwinStage(nn.Module):
    """Patch merging (all stages but the first), then blocks alternating W-MSA and SW-MSA."""

    def __init__(self, cfg: SwinConfig, index: int, rates: list[float]) -> None:
        super().__init__()
        dim, grid = cfg.stage_dims[index], cfg.stage_grids[index]
        self.downsample = PatchMerging(dim // 2, cfg.norm_eps) if index > 0 else nn.Identity()
        self.blocks = nn.Sequential(
            *[SwinBlock(cfg, dim, cfg.num_heads[index], grid, i % 2 == 1, rate) for i, rate in enumerate(rates)]
        )
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C_in) -> (B, H', W', C) with H' = H/2, C = 2 C_in after a merge."""
        x = self.downsample(x)
        for block in self.blocks:
            if self.grad_checkpointing and x.requires_grad:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


class ClassifierHead(nn.Module):
    """Dropout + Linear on pooled features (timm's ``head.fc`` names)."""

    def __init__(self, dim: int, num_classes: int, drop: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


class SwinTransformer(nn.Module):
    """Swin for image classification; every option is a field of :class:`SwinConfig`."""

    def __init__(self, cfg: SwinConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or SwinConfig()
        self.num_features = cfg.num_features
        self.num_classes = cfg.num_classes  # the head's size; reset_classifier changes it, never the config
        self.dynamic_img_size = cfg.dynamic_img_size  # a runtime switch too (viz turns it on); cfg stays as built
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim, cfg.norm_eps)
        # Stochastic depth grows linearly over all blocks of all stages, from 0 to drop_path_rate.
        total = sum(cfg.depths)
        rates = drop_path_rates(cfg.drop_path_rate, total)
        starts = [sum(cfg.depths[:s]) for s in range(cfg.num_stages)]
        self.layers = nn.Sequential(
            *[SwinStage(cfg, s, rates[start : start + d]) for s, (start, d) in enumerate(zip(starts, cfg.depths))]
        )
        self.norm = nn.LayerNorm(self.num_features, eps=cfg.norm_eps)
        self.head = ClassifierHead(self.num_features, cfg.num_classes, cfg.drop_rate)
        self.feature_info = [
            dict(num_chs=dim, reduction=cfg.patch_size[0] * 2**s, module=f"layers.{s}")
            for s, dim in enumerate(cfg.stage_dims)
        ]
        self.init_weights()

    # ----------------------------------------------------------------------------------------------- set-up
    @torch.no_grad()
    def init_weights(self) -> None:
        """Original initialisation: truncated-normal (std 0.02) Linear weights and bias tables, zero biases;
        a zero head when ``zero_head``."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, WindowAttention):
                trunc_normal_(module.relative_position_bias_table)
        if self.cfg.zero_head and isinstance(self.head.fc, nn.Linear):
            nn.init.zeros_(self.head.fc.weight)

    def reset_classifier(self, num_classes: int, zero_init: bool = True) -> None:
        """Replace the head for ``num_classes`` (0 removes it), zero-initialised as for fine-tuning.

        The config keeps describing the model as built; ``self.num_classes`` is the new head's size.
        """
        self.num_classes = num_classes
        device = self.norm.weight.device
        self.head = ClassifierHead(self.num_features, num_classes, self.cfg.drop_rate).to(device)
        if isinstance(self.head.fc, nn.Linear):
            if zero_init:
                nn.init.zeros_(self.head.fc.weight)
            else:
                trunc_normal_(self.head.fc.weight)
            nn.init.zeros_(self.head.fc.bias)

    def no_weight_decay(self) -> set[str]:
        """The relative position bias tables (timm's ``no_weight_decay_keywords``); norms and biases by rule."""
        return {n for n, _ in self.named_parameters() if n.endswith("relative_position_bias_table")}

    def group_matcher(self, coarse: bool = False) -> dict:
        """Layer groups for layer-wise learning-rate decay, in timm's form: stem, then stages or blocks."""
        if coarse:
            return {"stem": r"^patch_embed", "blocks": r"^layers\.(\d+)"}
        return {
            "stem": r"^patch_embed",
            "blocks": [
                (r"^layers\.(\d+)\.downsample", (0,)),
                (r"^layers\.(\d+)\.\w+\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        }

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them."""
        for stage in self.layers:
            stage.grad_checkpointing = enable

    # --------------------------------------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        cfg = self.cfg
        check_image_batch(x, cfg.in_chans)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if size != cfg.img_size:
            if not self.dynamic_img_size:
                raise ValueError(
                    f"model expects {cfg.img_size[0]}x{cfg.img_size[1]} images, got {size[0]}x{size[1]}; resize the "
                    f"input, build the model with img_size={size} (bias tables do not depend on it), or pass "
                    "dynamic_img_size=True"
                )
            cfg.check_image_size(size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H/r, W/r, C_last) after the final LayerNorm (r = patch * 2^(stages-1))."""
        self._check_input(x)
        return self.norm(self.layers(self.patch_embed(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, H, W, C) feature map -> (B, classes) logits, or the pooled (B, C) features."""
        return self.head(x.mean(dim=(1, 2)), pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # ------------------------------------------------------------------------------------------- inspection
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        *,
        norm: bool = False,
        stop_early: bool = False,
        intermediates_only: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]] | list[torch.Tensor]:
        """``(final map (B, H, W, C) after the last LayerNorm, [stage outputs as (B, C, H, W)])``, as every vitkit
        model returns it: ``indices`` picks stages (None: all, an int n: the last n); ``norm`` applies the final
        LayerNorm to the last stage's map, as timm does; ``stop_early`` skips stages after the last chosen one."""
        self._check_input(x)
        count = self.cfg.num_stages
        wanted = set(chosen_indices(indices, count))
        stop = max(wanted) + 1 if stop_early and wanted else count
        x = self.patch_embed(x)
        maps = []
        for s, stage in enumerate(self.layers[:stop]):
            x = stage(x)
            if s in wanted:
                out = self.norm(x) if norm and s == count - 1 else x
                maps.append(out.permute(0, 3, 1, 2))
        return maps if intermediates_only else (self.norm(x), maps)

    def window_attention(self, x: torch.Tensor) -> list[dict]:
        """Per block, in order: its attention probabilities and the geometry needed to read them.

        Each entry holds ``attn`` (B, nW, heads, M*M, M*M) over windows of the rolled map, ``grid`` (H, W) of
        its stage, ``window`` M, ``shift`` (the roll), ``stage`` and ``stride`` (pixels per token).
        """
        self._check_input(x)
        x = self.patch_embed(x)
        out = []
        for s, stage in enumerate(self.layers):
            x = stage.downsample(x)
            B, H, W, _ = x.shape
            for block in stage.blocks:
                x, attn = block(x, return_attention=True)
                nW = (H // block.window) * (W // block.window)
                out.append(
                    dict(
                        attn=attn.reshape(B, nW, *attn.shape[1:]),
                        grid=(H, W),
                        window=block.window,
                        shift=block.shift((H, W)),
                        stage=s,
                        stride=self.cfg.patch_size[0] * 2**s,
                    )
                )
        return out
