"""Masked autoencoder (He et al. 2022): a ViT encoder on the visible patches, a light decoder for the rest.

    x_p = patches(img) E + E_pos                       fixed 2D sin-cos E_pos (Sec. 3, "MAE encoder")
    keep = argsort(noise)[:N (1 - r)]                  per-sample random masking by sorting uniform noise
    z = Encoder([x_class; x_p[keep]])                  the encoder never sees a mask token
    y = Decoder(unshuffle([z; mask tokens]) + D_pos)   the decoder's own sin-cos table
    loss = mean over masked patches of |pred - norm(target)|^2

The encoder is a vitkit :class:`VisionTransformer` (``self.encoder``, no head), so its weights export as a plain
ViT for fine-tuning. The decoder's names follow the official ``models_mae.py`` (``decoder_embed``, ``mask_token``,
``decoder_blocks``, ``decoder_norm``, ``decoder_pred``); the position tables are not stored (they are fixed).
"""

from __future__ import annotations

import torch
from torch import nn

from vitkit.config.mae import MAEConfig, check_mask_ratio
from vitkit.layers.block import Block
from vitkit.layers.pos_embed import sincos_2d
from vitkit.models.vit import VisionTransformer


def patchify(imgs: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, ph * pw * C), each patch flattened row by row with channels last (as models_mae)."""
    B, C, H, W = imgs.shape
    ph, pw = patch
    x = imgs.reshape(B, C, H // ph, ph, W // pw, pw)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // ph) * (W // pw), ph * pw * C)


def unpatchify(x: torch.Tensor, patch: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, ph * pw * C) -> (B, C, H, W), the inverse of :func:`patchify`."""
    B = x.shape[0]
    (ph, pw), (gh, gw) = patch, grid
    x = x.reshape(B, gh, gw, ph, pw, -1)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(B, -1, gh * ph, gw * pw)


def random_masking(
    x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random ``1 - mask_ratio`` of the tokens of each sample.

    (B, N, D) -> visible (B, K, D), mask (B, N) with 1 = hidden, ids_restore (B, N) that undoes the shuffle.
    The tokens with the smallest ``noise`` are kept; passing ``noise`` makes the mask reproducible.
    """
    B, N, D = x.shape
    keep = int(N * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(B, N, device=x.device)
    elif noise.shape != (B, N):
        raise ValueError(f"noise must have shape (batch, patches) = {(B, N)}, got {tuple(noise.shape)}")
    ids_shuffle = torch.argsort(noise.to(x.device), dim=1)  # ascending: the first `keep` stay visible
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    visible = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    mask = torch.ones(B, N, device=x.device, dtype=x.dtype)
    mask[:, :keep] = 0
    return visible, torch.gather(mask, 1, ids_restore), ids_restore


def pixel_targets(imgs: torch.Tensor, patch: tuple[int, int], normalize: bool) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, P*P*C) targets; with ``normalize`` each patch has zero mean and unit variance (Sec. 3,
    "per-patch normalized pixels"; unbiased variance plus 1e-6, as models_mae.forward_loss)."""
    target = patchify(imgs, patch)
    if normalize:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    return target


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per patch, averaged over the hidden patches only (visible ones do not count)."""
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, N)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1)


class MaskedAutoencoder(nn.Module):
    """MAE pre-training model; ``forward(imgs, mask_ratio, noise)`` returns ``(loss, pred, mask)`` like the
    official code: pred (B, N, P*P*C) in the (normalised) target space, mask (B, N) with 1 on hidden patches."""

    def __init__(self, cfg: MAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VisionTransformer(cfg.encoder_config())
        Dd = cfg.decoder_embed_dim
        self.decoder_embed = nn.Linear(cfg.embed_dim, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.register_buffer("decoder_pos_embed", self._decoder_table(cfg.grid_size), persistent=False)
        self.decoder_blocks = nn.Sequential(
            *[
                Block(
                    Dd,
                    cfg.decoder_num_heads,
                    cfg.decoder_mlp_dim,
                    cfg.qkv_bias,
                    norm_eps=cfg.norm_eps,
                    act_layer=cfg.act_layer,
                )  # fmt: skip
                for _ in range(cfg.decoder_depth)
            ]
        )
        self.decoder_norm = nn.LayerNorm(Dd, eps=cfg.norm_eps)
        self.decoder_pred = nn.Linear(Dd, cfg.patch_size[0] * cfg.patch_size[1] * cfg.in_chans)
        self.init_weights()

    def _decoder_table(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, 1 + N, Dd): a zero row for the class token, then the sin-cos table of the grid."""
        table = sincos_2d(grid, self.cfg.decoder_embed_dim)
        return torch.cat([table.new_zeros(1, table.shape[1]), table]).unsqueeze(0)

    @torch.no_grad()
    def init_weights(self) -> None:
        """models_mae.initialize_weights: Xavier-uniform Linear weights (and the patch projection, seen as a
        Linear), zero biases, unit LayerNorms, normal(0.02) class and mask tokens."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        proj = self.encoder.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        nn.init.zeros_(proj.bias)
        nn.init.normal_(self.encoder.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def feature_info(self) -> list[dict]:
        """The encoder's blocks (all patches visible), as for a ViT."""
        return [{**info, "module": f"encoder.{info['module']}"} for info in self.encoder.feature_info]

    def no_weight_decay(self) -> set[str]:
        """None: the official pre-training decays every weight of two or more dimensions, tokens included."""
        return set()

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """The encoder's groups (embedding, then one per block); the decoder falls in the last group."""
        return {"stem": r"^encoder\.(?:cls_token|pos_embed|patch_embed)", "blocks": r"^encoder\.blocks\.(\d+)"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the encoder's block activations in the backward pass (the light decoder keeps its own)."""
        self.encoder.set_grad_checkpointing(enable)

    def reset_classifier(self, num_classes: int, zero_init: bool = True) -> None:
        """An MAE has no classifier: its encoder becomes one (``load_pretrained(ckpt, num_classes=K)``)."""
        raise ValueError(
            "an MAE has no classifier to reset; load its encoder as a classifier instead: "
            f"vitkit.load_pretrained(CKPT, num_classes={num_classes}) (or vitkit finetune)"
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1 + N, D): the encoder on every patch (no masking), after its final LayerNorm."""
        return self.encoder.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 1 + N, D) -> (B, D): the pooled encoder features (an MAE has no classifier)."""
        return self.encoder.forward_head(x, pre_logits=pre_logits)

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | list[int] | None = None, **options: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]] | list[torch.Tensor]:
        """The encoder's :meth:`~vitkit.models.vit.VisionTransformer.forward_intermediates` on every patch."""
        return self.encoder.forward_intermediates(x, indices, **options)

    # ------------------------------------------------------------------------------------------- forward
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        return patchify(imgs, self.cfg.patch_size)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        return unpatchify(x, self.cfg.patch_size, self.cfg.grid_size)

    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> latent (B, 1 + K, D) of the class token and the K visible patches, mask, ids_restore."""
        enc = self.encoder
        enc._check_input(imgs)  # one-line errors for a wrong shape or an image size not divisible by the patch
        x = enc.patch_embed(imgs)  # (B, D, gh, gw)
        table = enc.position_table((x.shape[-2], x.shape[-1]))  # (1, 1 + N, D), zero class-token row
        x = x.flatten(2).transpose(1, 2) + table[:, 1:]  # (B, N, D)
        x, mask, ids_restore = random_masking(x, mask_ratio, noise)
        cls = (enc.cls_token + table[:, :1]).expand(x.shape[0], -1, -1)
        x = enc.blocks(torch.cat([cls, x], dim=1))
        return enc.norm(x), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent (B, 1 + K, D) -> pixel predictions (B, N, P*P*C) for every patch, in the original order."""
        x = self.decoder_embed(latent)  # (B, 1 + K, Dd)
        B, N = ids_restore.shape
        tokens = torch.cat([x[:, 1:], self.mask_token.expand(B, N - x.shape[1] + 1, -1)], dim=1)  # (B, N, Dd)
        tokens = torch.gather(tokens, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))  # unshuffle
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x)[:, 1:]  # drop the class token

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mse(pred, pixel_targets(imgs, self.cfg.patch_size, self.cfg.norm_pix_loss), mask)

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, pred (B, N, P*P*C), mask (B, N)); ``mask_ratio`` defaults to the config's (0.75)."""
        ratio = self.cfg.mask_ratio if mask_ratio is None else check_mask_ratio(mask_ratio)
        latent, mask, ids_restore = self.forward_encoder(imgs, ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    @torch.no_grad()
    def reconstruct(
        self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Images for the paper's Fig. 2, all (B, C, H, W) in the input's space: ``masked`` (hidden patches
        zeroed), ``reconstruction`` (predictions with each patch's own mean and variance restored when the
        targets were normalised), ``pasted`` (the reconstruction with the visible patches put back); and the
        per-pixel ``mask`` (B, 1, H, W)."""
        loss, pred, mask = self(imgs, mask_ratio, noise)
        if self.cfg.norm_pix_loss:  # undo the per-patch normalisation with the true patch statistics
            target = self.patchify(imgs)
            pred = pred * (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(dim=-1, keepdim=True)
        P = self.cfg.patch_size[0] * self.cfg.patch_size[1]
        pixel_mask = self.unpatchify(mask[..., None].expand(-1, -1, P))  # (B, 1, H, W)
        recon = self.unpatchify(pred)
        return {
            "original": imgs,
            "masked": imgs * (1 - pixel_mask),
            "reconstruction": recon,
            "pasted": imgs * (1 - pixel_mask) + recon * pixel_mask,
            "mask": pixel_mask,
            "loss": loss,
        }
