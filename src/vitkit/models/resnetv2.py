"""ResNetV2 with weight-standardised convolutions and GroupNorm (BiT, Kolesnikov et al. 2020): one implementation
for the BiT classifiers, the small ResNet for 32 px images, and the hybrid ViT's stem (ViT paper Sec. 3.1).

Two numerical conventions meet here, each reproducing the code that trained its weights (:class:`Numerics`):

- BiT (big_transfer, timm's port): symmetric padding, ``w = (w - mean) / sqrt(var + eps)``, GroupNorm eps 1e-5;
  pre-activation units (GN, ReLU, conv) with the projection shortcut fed by the pre-activated input; the stem is a
  7x7/2 conv, a zero pad of 1 and a 3x3/2 max-pool; a final GN + ReLU before pooling.
- vit_jax ``models_resnet.py`` (the hybrids): TensorFlow 'SAME' padding (the odd pixel after, the max-pool padding
  with -inf), ``w = (w - mean) / (std + 1e-5)``, GroupNorm eps 1e-6; post-activation units (conv, GN, ReLU) and a
  stem of conv, GN, ReLU, max-pool.

Module names follow timm's ``ResNetV2`` (``stem.conv``, ``stages.{i}.blocks.{j}.conv1``, ``norm``, ``head.fc``),
so timm state dicts load without renaming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vitkit.config.resnet import ResNetV2Config
from vitkit.layers.drop import DropPath, drop_path_rates
from vitkit.layers.inputs import check_image_batch
from vitkit.models.features import chosen_indices


@dataclass(frozen=True)
class Numerics:
    """How convolutions pad and standardise, and GroupNorm's groups and epsilon."""

    padding: str = "symmetric"  # or "same" (TensorFlow)
    ws_style: str = "var"  # "var": (w - m) / sqrt(var + eps); "std": (w - m) / (std + eps)
    ws_eps: float = 1e-8
    gn_groups: int = 32
    gn_eps: float = 1e-5

    @classmethod
    def of(cls, cfg: ResNetV2Config) -> Numerics:
        return cls(cfg.padding, cfg.ws_style, cfg.ws_eps, cfg.gn_groups, cfg.gn_eps)


JAX_NUMERICS = Numerics(padding="same", ws_style="std", ws_eps=1e-5, gn_groups=32, gn_eps=1e-6)  # vit_jax


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad (B, C, H, W) as TensorFlow's 'SAME' does: output size ceil(H / stride), odd padding goes last."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last axis first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class StdConv2d(nn.Conv2d):
    """Bias-free convolution with weight standardisation (Qiao et al. 2019) over each output channel's kernel."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int, stride: int = 1, num: Numerics = Numerics()):
        pad = kernel_size // 2 if num.padding == "symmetric" else 0
        super().__init__(in_chans, out_chans, kernel_size, stride=stride, padding=pad, bias=False)
        self.num = num
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)  # population statistics, as jnp / tf
        if self.num.ws_style == "std":
            return (w - mean) / (var.sqrt() + self.num.ws_eps)
        return (w - mean) / torch.sqrt(var + self.num.ws_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num.padding == "same":
            x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.standardized_weight(), None, self.stride, self.padding)


def group_norm(channels: int, num: Numerics) -> nn.GroupNorm:
    return nn.GroupNorm(num.gn_groups, channels, eps=num.gn_eps)


class Downsample(nn.Module):
    """Projection shortcut: a strided 1x1 standardised conv, followed by GN in post-activation units."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, num: Numerics, preact: bool) -> None:
        super().__init__()
        self.conv = StdConv2d(in_chans, out_chans, 1, stride, num)
        self.norm = nn.Identity() if preact else group_norm(out_chans, num)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class _Unit(nn.Module):
    """What every residual unit shares: a projection shortcut where the shape changes, and stochastic depth."""

    expansion = 4
    preact = True

    def __init__(self, in_chans: int, mid: int, stride: int, num: Numerics, drop_path: float) -> None:
        super().__init__()
        out_chans = self.expansion * mid
        projection = in_chans != out_chans or stride != 1
        self.downsample = Downsample(in_chans, out_chans, stride, num, self.preact) if projection else None
        self.drop_path = DropPath(drop_path)


class Bottleneck(_Unit):
    """Post-activation unit (vit_jax): 1x1 -> 3x3 (strided) -> 1x1, GN after each conv, ReLU after the sum."""

    preact = False

    def __init__(self, in_chans: int, mid: int, stride: int, num: Numerics, drop_path: float = 0.0) -> None:
        super().__init__(in_chans, mid, stride, num, drop_path)
        self.conv1, self.norm1 = StdConv2d(in_chans, mid, 1, 1, num), group_norm(mid, num)
        self.conv2, self.norm2 = StdConv2d(mid, mid, 3, stride, num), group_norm(mid, num)
        self.conv3, self.norm3 = StdConv2d(mid, 4 * mid, 1, 1, num), group_norm(4 * mid, num)
        nn.init.zeros_(self.norm3.weight)  # each unit starts as the identity (gn3 in the JAX code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        return F.relu(self.drop_path(y) + shortcut)


class PreActBottleneck(_Unit):
    """Pre-activation unit (BiT): GN, ReLU, 1x1 -> GN, ReLU, 3x3 (strided) -> GN, ReLU, 1x1, plus the shortcut."""

    def __init__(self, in_chans: int, mid: int, stride: int, num: Numerics, drop_path: float = 0.0) -> None:
        super().__init__(in_chans, mid, stride, num, drop_path)
        self.norm1, self.conv1 = group_norm(in_chans, num), StdConv2d(in_chans, mid, 1, 1, num)
        self.norm2, self.conv2 = group_norm(mid, num), StdConv2d(mid, mid, 3, stride, num)
        self.norm3, self.conv3 = group_norm(mid, num), StdConv2d(mid, 4 * mid, 1, 1, num)
        nn.init.zeros_(self.conv3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.norm1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        y = self.conv1(pre)
        y = self.conv2(F.relu(self.norm2(y)))
        y = self.conv3(F.relu(self.norm3(y)))
        return self.drop_path(y) + shortcut


class PreActBasic(_Unit):
    """Pre-activation basic unit (He et al. 2016): GN, ReLU, 3x3 (strided) -> GN, ReLU, 3x3, plus the shortcut."""

    expansion = 1

    def __init__(self, in_chans: int, mid: int, stride: int, num: Numerics, drop_path: float = 0.0) -> None:
        super().__init__(in_chans, mid, stride, num, drop_path)
        self.norm1, self.conv1 = group_norm(in_chans, num), StdConv2d(in_chans, mid, 3, stride, num)
        self.norm2, self.conv2 = group_norm(mid, num), StdConv2d(mid, mid, 3, 1, num)
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.norm1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        y = self.conv2(F.relu(self.norm2(self.conv1(pre))))
        return self.drop_path(y) + shortcut


BLOCK_TYPES: dict[str, type[_Unit]] = {
    "bottleneck": Bottleneck,
    "preact_bottleneck": PreActBottleneck,
    "preact_basic": PreActBasic,
}


class ResNetStage(nn.Module):
    """``depth`` units of one type; the first one strides and projects."""

    def __init__(
        self, block: str, in_chans: int, mid: int, depth: int, stride: int, num: Numerics, rates: list[float]
    ) -> None:
        super().__init__()
        cls = BLOCK_TYPES[block]
        out_chans = mid * cls.expansion
        self.blocks = nn.Sequential(
            *[cls(in_chans if i == 0 else out_chans, mid, stride if i == 0 else 1, num, rates[i]) for i in range(depth)]
        )
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and x.requires_grad and not torch.jit.is_scripting():
            for unit in self.blocks:
                x = checkpoint(unit, x, use_reentrant=False)
            return x
        return self.blocks(x)


class Stem(nn.Module):
    """(B, C, H, W) -> (B, width, H/4, W/4) for 'fixed' / 'same', (B, width, H, W) for 'cifar'.

    'same' (post-activation, vit_jax): 7x7/2 conv, GN, ReLU, 3x3/2 max-pool, both 'SAME'-padded.
    'fixed' (BiT): 7x7/2 conv, zero pad 1, 3x3/2 max-pool; no norm, the first unit pre-activates.
    'cifar': one 3x3/1 conv, no pool (32 px images have no pixels to spare).
    """

    def __init__(self, in_chans: int, width: int, kind: str, num: Numerics) -> None:
        super().__init__()
        self.kind = kind
        self.conv = StdConv2d(in_chans, width, 3 if kind == "cifar" else 7, 1 if kind == "cifar" else 2, num)
        if kind == "same":
            self.norm = group_norm(width, num)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.kind == "same":
            x = F.relu(self.norm(x))
            return F.max_pool2d(pad_same(x, 3, 2, value=float("-inf")), 3, 2)
        if self.kind == "fixed":
            return F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2)
        return x


def build_stages(
    block: str, in_chans: int, width: int, layers: tuple[int, ...], num: Numerics, drop_path_rate: float = 0.0
) -> tuple[nn.Sequential, int]:
    """The stages after the stem: base width ``width * 2**i``; returns them and their output channels."""
    total = sum(layers)
    rates = drop_path_rates(drop_path_rate, total)
    stages, chans, start = [], in_chans, 0
    for i, depth in enumerate(layers):
        mid = width * 2**i
        stages.append(ResNetStage(block, chans, mid, depth, 1 if i == 0 else 2, num, rates[start : start + depth]))
        chans, start = mid * BLOCK_TYPES[block].expansion, start + depth
    return nn.Sequential(*stages), chans


class ResNetV2Backbone(nn.Module):
    """The hybrid ViT's stem (post-activation, JAX numerics): (B, C, H, W) -> (B, F, H/s, W/s)."""

    def __init__(self, in_chans: int, layers: tuple[int, ...], width: int = 64, num: Numerics = JAX_NUMERICS):
        super().__init__()
        if not layers:
            raise ValueError("a ResNet backbone needs at least one stage; a root-only hybrid uses Stem alone")
        self.stem = Stem(in_chans, width, "same", num)
        self.stages, self.num_features = build_stages("bottleneck", width, width, layers, num)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class ResNetV2(nn.Module):
    """A ResNetV2 classifier (BiT, or the small 32 px ResNet): stem, stages, final GN + ReLU, average pool, a 1x1
    conv head (timm's ``head.fc``, as BiT's ``head/conv2d``)."""

    def __init__(self, cfg: ResNetV2Config) -> None:
        super().__init__()
        self.cfg = cfg
        num = Numerics.of(cfg)
        preact = cfg.block.startswith("preact")
        self.stem = Stem(cfg.in_chans, cfg.width, cfg.stem, num)
        self.stages, self.num_features = build_stages(
            cfg.block, cfg.width, cfg.width, cfg.layers, num, cfg.drop_path_rate
        )
        self.norm = group_norm(self.num_features, num) if preact else nn.Identity()
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.num_classes = cfg.num_classes
        self.head = nn.Module()
        self.head.fc = self._make_fc(cfg.num_classes)
        stem_reduction = 1 if cfg.stem == "cifar" else 4
        self.feature_info = [dict(num_chs=cfg.width, reduction=stem_reduction, module="stem")] + [
            dict(num_chs=c, reduction=stem_reduction * 2**i, module=f"stages.{i}")
            for i, c in enumerate(cfg.stage_widths)
        ]

    def _make_fc(self, num_classes: int, zero_init: bool = True) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Conv2d(self.num_features, num_classes, 1)
        if zero_init:  # BiT trains and fine-tunes from a zero head
            nn.init.zeros_(fc.weight)
        else:
            nn.init.normal_(fc.weight, std=0.01)
        nn.init.zeros_(fc.bias)
        return fc

    # ------------------------------------------------------------------------------------- timm's method set
    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(x)) if isinstance(self.norm, nn.GroupNorm) else x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, F, H/r, W/r) feature map after the final pre-activation norm."""
        check_image_batch(x, self.cfg.in_chans)
        return self._final_norm(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, F, h, w) -> (B, classes) logits, or the pooled (B, F) features."""
        x = self.head_drop(x.mean(dim=(2, 3), keepdim=True))  # (B, F, 1, 1)
        if pre_logits:
            return x.flatten(1)
        return self.head.fc(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, zero_init: bool = True) -> None:
        """A new head for ``num_classes`` (0 removes it), zero-initialised as BiT fine-tunes (else normal, std 0.01);
        the config keeps describing the model as built, ``self.num_classes`` is the new head's size."""
        self.num_classes = num_classes
        device = next(self.parameters()).device
        self.head.fc = self._make_fc(num_classes, zero_init).to(device)

    def no_weight_decay(self) -> set[str]:
        """Nothing beyond the usual norms and biases (which the optimiser's rule already skips)."""
        return set()

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise learning-rate decay, in timm's form."""
        blocks = r"^stages\.(\d+)" if coarse else [(r"^stages\.(\d+)\.blocks\.(\d+)", None), (r"^norm", (99999,))]
        return {"stem": r"^stem", "blocks": blocks}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        *,
        norm: bool = False,
        stop_early: bool = False,
        intermediates_only: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]] | list[torch.Tensor]:
        """``(final feature map, [maps])``, as every vitkit model returns it: the maps after the stem and after each
        stage (``feature_info`` order; ``indices`` picks among them, an int n: the last n); ``norm`` applies the
        final pre-activation norm to the last stage's map; ``stop_early`` skips stages after the last chosen one."""
        check_image_batch(x, self.cfg.in_chans)
        count = len(self.feature_info)
        wanted = set(chosen_indices(indices, count))
        stop = max(wanted) if stop_early and wanted else count - 1  # stages to run
        x = self.stem(x)
        maps = [x] if 0 in wanted else []
        for i, stage in enumerate(self.stages[:stop]):
            x = stage(x)
            if i + 1 in wanted:
                maps.append(self._final_norm(x) if norm and i + 1 == count - 1 else x)
        return maps if intermediates_only else (self._final_norm(x), maps)
