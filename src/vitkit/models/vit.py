"""The Vision Transformer of Dosovitskiy et al. (2020), readable top to bottom.

    z0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos        (Eq. 1)
    z'_l = MSA(LN(z_{l-1})) + z_{l-1}                     (Eq. 2)
    z_l = MLP(LN(z'_l)) + z'_l                            (Eq. 3)
    y = LN(z_L^0)                                         (Eq. 4)

E_pos is a learned 1D or 2D table, a fixed 1D or 2D sin-cos one, or nothing (Appendix D.4); with 'relative' it is
nothing and every MSA adds a learned bias B[offset] to its logits instead, softmax(QK^T / sqrt(d) + B) V (BEiT).

State-dict names follow timm (``cls_token``, ``pos_embed``, ``blocks.{i}.attn.qkv.weight``, ...), so timm
weights load without renaming.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vitkit.config import ViTConfig
from vitkit.layers.block import Block
from vitkit.layers.conv_stem import ConvStem
from vitkit.layers.drop import drop_path_rates
from vitkit.layers.inputs import check_image_batch
from vitkit.layers.patch_embed import PatchEmbed
from vitkit.layers.pos_embed import resample_axis_embed, resample_pos_embed, sincos_1d, sincos_2d
from vitkit.models.features import chosen_indices

# Learned tokens and position tables: initialised alike, and exempt from weight decay.
_TOKEN_PARAMS = frozenset({"cls_token", "dist_token", "pos_embed", "pos_embed_row", "pos_embed_col"})
_BIAS_TABLE = "relative_position_bias_table"  # per block with pos_embed='relative' (timm's BEiT name)


def _is_position_param(name: str) -> bool:
    """Tokens, absolute tables and relative bias tables (BEiT initialises and exempts them all alike)."""
    return name in _TOKEN_PARAMS or name.endswith("." + _BIAS_TABLE)


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Normal(0, std) truncated at two standard deviations (torch's default bounds are +-2 absolute)."""
    return nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


def _build_patch_embed(cfg: ViTConfig) -> nn.Module:
    if cfg.backbone_layers is not None:
        from vitkit.models.resnet_stem import HybridEmbed  # the hybrid's BiT stem (paper Sec. 3.1)

        return HybridEmbed(cfg)
    if cfg.stem_channels is not None:
        return ConvStem(cfg.stem_channels, cfg.stem_strides, cfg.in_chans, cfg.embed_dim)
    return PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim)


class VisionTransformer(nn.Module):
    """ViT for image classification; every option is a field of :class:`ViTConfig`."""

    def __init__(self, cfg: ViTConfig | None = None, **changes) -> None:
        super().__init__()
        cfg = cfg or ViTConfig()
        self.cfg = cfg = cfg.replace(**changes) if changes else cfg
        D = cfg.embed_dim
        self.num_prefix_tokens = cfg.num_prefix_tokens
        self.num_classes = cfg.num_classes  # the head's size; reset_classifier changes it, never the config
        self.dynamic_img_size = cfg.dynamic_img_size  # accept any image size (viz sets it for other resolutions)
        self.grad_checkpointing = False  # recompute block activations in the backward pass (set_grad_checkpointing)

        self.patch_embed = _build_patch_embed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.distilled else None
        gh, gw = cfg.grid_size
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + gh * gw, D))
        elif cfg.pos_embed == "learned2d":
            # Paper Appendix D.4: an X- and a Y-embedding of D/2 each, concatenated per patch.
            self.pos_embed_row = nn.Parameter(torch.zeros(1, gh, D // 2))
            self.pos_embed_col = nn.Parameter(torch.zeros(1, gw, D // 2))
        elif cfg.pos_embed in ("sincos1d", "sincos2d"):  # fixed: recomputed, never saved
            self.register_buffer("pos_embed", self._sincos_table((gh, gw)), persistent=False)
        self.pos_drop = nn.Dropout(cfg.pos_drop_rate)

        # Stochastic depth grows linearly with depth, from 0 to drop_path_rate.
        rates = drop_path_rates(cfg.drop_path_rate, cfg.depth)
        self.blocks = nn.Sequential(
            *[
                Block(
                    D,
                    cfg.num_heads,
                    cfg.mlp_dim,
                    qkv_bias=cfg.qkv_bias,
                    pre_norm=cfg.pre_norm,
                    norm_eps=cfg.norm_eps,
                    act_layer=cfg.act_layer,
                    attn_drop=cfg.attn_drop_rate,
                    proj_drop=cfg.proj_drop_rate,
                    drop_path=rate,
                    # 'relative' (BEiT): each block's attention adds its own learned bias, no absolute table.
                    relative_grid=cfg.grid_size if cfg.pos_embed == "relative" else None,
                    num_prefix_tokens=self.num_prefix_tokens,
                )
                for rate in rates
            ]
        )
        # Post-LN blocks already end in a LayerNorm; timm's fc_norm moves the final norm after pooling.
        final_norm = cfg.pre_norm
        self.norm = nn.LayerNorm(D, eps=cfg.norm_eps) if final_norm and not cfg.fc_norm else nn.Identity()
        self.fc_norm = nn.LayerNorm(D, eps=cfg.norm_eps) if final_norm and cfg.fc_norm else nn.Identity()
        if cfg.representation_size:
            self.pre_logits = nn.Sequential(
                OrderedDict(fc=nn.Linear(D, cfg.representation_size), act=nn.Tanh())
            )  # pre-training head (paper Sec. 3.1)
            self.num_features = cfg.representation_size
        else:
            self.pre_logits = nn.Identity()
            self.num_features = D
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = self._make_head(cfg.num_classes)
        self.head_dist = self._make_head(cfg.num_classes) if cfg.distilled else None
        stride = cfg.patch_stride[0]
        self.feature_info = [dict(num_chs=D, reduction=stride, module=f"blocks.{i}") for i in range(cfg.depth)]
        self.init_weights()

    # ----------------------------------------------------------------------------------------------- set-up
    def _sincos_table(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, prefix + gh*gw, D) fixed table; prefix tokens get zero entries (no position), as in MAE."""
        D = self.cfg.embed_dim
        table = sincos_1d(grid[0] * grid[1], D) if self.cfg.pos_embed == "sincos1d" else sincos_2d(grid, D)
        prefix = torch.zeros(self.num_prefix_tokens, D)
        return torch.cat([prefix, table]).unsqueeze(0)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Reference initialisation: truncated-normal tokens and position tables (std 0.02), truncated-normal
        Linear weights with zero biases, LeCun-normal patch projection, and a zero head when ``zero_head``."""
        for name, param in self.named_parameters():
            if _is_position_param(name):
                trunc_normal_(param, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if isinstance(self.patch_embed, (PatchEmbed, ConvStem)):
            proj = self.patch_embed.proj
            fan_in = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
            trunc_normal_(proj.weight, std=math.sqrt(1.0 / fan_in) / 0.87962566)  # LeCun normal (JAX)
            nn.init.zeros_(proj.bias)
        if self.cfg.zero_head:
            for head in (self.head, self.head_dist):
                if isinstance(head, nn.Linear):
                    nn.init.zeros_(head.weight)
                    nn.init.zeros_(head.bias)

    def reset_classifier(self, num_classes: int, zero_init: bool = True) -> None:
        """Replace the head for ``num_classes`` (0 removes it), zero-initialised as for fine-tuning.

        The config keeps describing the model as built; ``self.num_classes`` is the new head's size.
        """
        self.num_classes = num_classes
        device = next(self.parameters()).device
        self.head = self._make_head(num_classes).to(device)
        if self.head_dist is not None:
            self.head_dist = self._make_head(num_classes).to(device)
        for head in (self.head, self.head_dist):
            if isinstance(head, nn.Linear):
                if zero_init:
                    nn.init.zeros_(head.weight)
                else:
                    trunc_normal_(head.weight, std=0.02)
                nn.init.zeros_(head.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameters that weight decay should skip: tokens, position tables and relative bias tables (norms and
        biases too, by rule)."""
        return {n for n, _ in self.named_parameters() if _is_position_param(n)}

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Parameter groups for layer-wise learning-rate decay (timm's convention): the embedding, then one group
        per block; unmatched parameters (final norm, head) form the last group."""
        return {"stem": r"^(?:cls_token|dist_token|pos_embed|patch_embed)", "blocks": r"^blocks\.(\d+)"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them (about a third more
        compute for memory that no longer grows with depth). State-dict names do not change."""
        self.grad_checkpointing = enable

    # ------------------------------------------------------------------------------------------- embedding
    def _check_input(self, x: torch.Tensor) -> None:
        cfg = self.cfg
        check_image_batch(x, cfg.in_chans)
        H, W = x.shape[-2:]
        ph, pw = cfg.patch_stride
        if H % ph or W % pw:
            raise ValueError(
                f"image size {H}x{W} is not divisible by the patch size {ph}x{pw}; resize or crop to a multiple, "
                f"e.g. {H - H % ph}x{W - W % pw}"
            )
        if not self.dynamic_img_size and (H, W) != cfg.img_size:
            raise ValueError(
                f"model expects {cfg.img_size[0]}x{cfg.img_size[1]} images, got {H}x{W}; resize the input, build "
                f"the model with img_size=({H}, {W}) (position embeddings are resampled on load), or pass "
                "dynamic_img_size=True"
            )

    def position_table(self, grid: tuple[int, int]) -> torch.Tensor | None:
        """(1, prefix + gh*gw, D) position embeddings for ``grid``, resampled in 2D when it differs (sin-cos ones
        recomputed); None when nothing is added to the tokens ('none', and 'relative', whose bias is in attention)."""
        kind = self.cfg.pos_embed
        if kind in ("none", "relative"):
            return None
        if kind == "learned2d":
            rows = resample_axis_embed(self.pos_embed_row, grid[0])  # (1, gh, D/2)
            cols = resample_axis_embed(self.pos_embed_col, grid[1])  # (1, gw, D/2)
            table = torch.cat(
                [rows[:, :, None].expand(-1, -1, grid[1], -1), cols[:, None].expand(-1, grid[0], -1, -1)], dim=-1
            ).flatten(1, 2)
            prefix = table.new_zeros(1, self.num_prefix_tokens, table.shape[-1])
            return torch.cat([prefix, table], dim=1)
        if grid == self.cfg.grid_size:
            return self.pos_embed
        if kind in ("sincos1d", "sincos2d"):
            return self._sincos_table(grid).to(self.pos_embed)
        return resample_pos_embed(self.pos_embed, grid, self.cfg.grid_size, self.num_prefix_tokens)

    def position_bias(self, grid: tuple[int, int] | None = None) -> torch.Tensor | None:
        """(L, H, T, T) relative position bias every block adds to its attention logits at ``grid`` (default: the
        configured one), T = prefix + gh*gw; None unless ``pos_embed='relative'``."""
        if self.cfg.pos_embed != "relative":
            return None
        return torch.stack([block.attn.position_bias(grid) for block in self.blocks])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, prefix + N, D): patches, prefix tokens and position embeddings (Eq. 1)."""
        self._check_input(x)
        x = self.patch_embed(x)  # (B, D, gh, gw)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.dist_token) if t is not None]
        if prefix:
            x = torch.cat([*prefix, x], dim=1)
        table = self.position_table(grid)
        if table is not None:
            x = x + table
        return self.pos_drop(x)

    # --------------------------------------------------------------------------------------------- forward
    def _pass(
        self, x: torch.Tensor, wanted: set[int], *, norm: bool, stop_early: bool, attention: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Embed and run the blocks, keeping the outputs (B, T, D) of the ``wanted`` ones and, with ``attention``,
        their probabilities (B, H, T, T) from an explicit softmax (the fused kernel never forms them). The one
        pass every other forward uses."""
        stop = max(wanted) + 1 if stop_early and wanted else len(self.blocks)
        grid = self._grid_of((x.shape[-2], x.shape[-1]))  # a relative bias needs the token grid
        x = self.embed(x)  # (B, T, D)
        outputs, maps = [], []
        for i, block in enumerate(self.blocks[:stop]):
            if attention and i in wanted:
                x, attn = block(x, return_attention=True, grid=grid)  # (B, T, D), (B, H, T, T)
                maps.append(attn)
            elif self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, grid=grid, use_reentrant=False)
            else:
                x = block(x, grid=grid)
            if i in wanted:
                outputs.append(self.norm(x) if norm else x)
        return self.norm(x), outputs, maps

    def _grid_of(self, size: tuple[int, int]) -> tuple[int, int]:
        """Patch grid (rows, cols) of images of ``size`` (H, W)."""
        return (size[0] // self.cfg.patch_stride[0], size[1] // self.cfg.patch_stride[1])

    def _wanted(self, indices: int | list[int] | tuple[int, ...] | None) -> set[int]:
        return set(chosen_indices(indices, len(self.blocks)))

    def _to_maps(self, tokens: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
        """(B, T, D) tokens -> (B, D, gh, gw) maps of the patch tokens (prefix tokens dropped)."""
        gh, gw = self._grid_of(size)
        return [t[:, self.num_prefix_tokens :].transpose(1, 2).reshape(t.shape[0], -1, gh, gw) for t in tokens]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        *,
        norm: bool = False,
        stop_early: bool = False,
        intermediates_only: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]] | list[torch.Tensor]:
        """``(final tokens (B, T, D) after the last LayerNorm, [block outputs as (B, D, gh, gw) maps])``, as every
        vitkit model returns it (timm's method): ``indices`` picks blocks (None: all, an int n: the last n, a
        list: those, negatives from the end); ``norm`` passes each map through the final LayerNorm; ``stop_early``
        skips the blocks after the last chosen one; ``intermediates_only`` returns the list alone."""
        size = (x.shape[-2], x.shape[-1])
        final, outputs, _ = self._pass(x, self._wanted(indices), norm=norm, stop_early=stop_early, attention=False)
        maps = self._to_maps(outputs, size)
        return maps if intermediates_only else (final, maps)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, prefix + N, D): all tokens after the final LayerNorm."""
        return self._pass(x, set(), norm=False, stop_early=False, attention=False)[0]

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, D): the class token, or the mean of the patch tokens."""
        if self.cfg.global_pool == "avg":
            return x[:, self.num_prefix_tokens :].mean(dim=1)
        return x[:, 0]

    def forward_head(
        self, x: torch.Tensor, pre_logits: bool = False, distillation: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) tokens -> (B, classes) logits, or the pooled features fed to the classifier. A DeiT model
        (``distilled``) averages its class and distillation heads, or returns both with ``distillation=True``."""
        feats = self.head_drop(self.pre_logits(self.fc_norm(self.pool(x))))
        if pre_logits:
            return feats
        logits = self.head(feats)
        if self.head_dist is not None:
            dist = self.head_dist(self.head_drop(x[:, 1]))
            return (logits, dist) if distillation else (logits + dist) / 2  # DeiT inference: average the heads
        return logits

    def forward(self, x: torch.Tensor, distillation: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> (B, classes). ``distillation=True`` asks a DeiT student for its (class, distillation)
        logits pair (DeiT Sec. 4); a model without a distillation head returns its logits as usual."""
        return self.forward_head(self.forward_features(x), distillation=distillation)

    # ------------------------------------------------------------------------------------------- inspection
    def get_intermediate_layers(
        self, x: torch.Tensor, n: int | list[int] = 1, norm: bool = False, reshape: bool = False
    ) -> list[torch.Tensor]:
        """Outputs of the last ``n`` blocks (or of the blocks indexed by ``n``), for dense tasks.

        Each is (B, T, D) with prefix tokens, or (B, D, gh, gw) patch maps with ``reshape=True``.
        """
        _, outputs, _ = self._pass(x, self._wanted(n), norm=norm, stop_early=True, attention=False)
        return self._to_maps(outputs, (x.shape[-2], x.shape[-1])) if reshape else outputs

    def get_attention_maps(self, x: torch.Tensor, indices: int | list[int] | None = None) -> list[torch.Tensor]:
        """Attention probabilities of every layer (or of the ``indices`` ones), each (B, heads, T, T); rows sum to
        one."""
        return self._pass(x, self._wanted(indices), norm=False, stop_early=False, attention=True)[2]
