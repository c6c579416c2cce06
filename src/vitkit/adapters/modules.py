"""The trainable pieces adapters add: a bottleneck MLP, a LoRA linear layer and prompt tokens.

Each attaches to a model from outside (a child module plus a forward hook, or a drop-in replacement of an
``nn.Linear``), so the model's own code and its state-dict names stay as they are. Hooks are bound methods of
the adapter modules, so ``copy.deepcopy`` (EMA copies) carries them along consistently.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    """D -> r -> D with the up-projection zero-initialised, so a fresh adapter adds exactly nothing.

    ``serial``: h + up(GELU(down(h))) applied to the MLP's output (Houlsby et al. 2019, after the MLP).
    ``parallel``: MLP(x) + scale * up(ReLU(down(x))) from the MLP's input (AdaptFormer, Chen et al. 2022).
    As the head adapter (serial), it hooks the classifier's input instead (:meth:`pre_hook`).
    """

    def __init__(self, dim: int, width: int, mode: str = "serial", scale: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.mode, self.scale = mode, scale
        self.down = nn.Linear(dim, width)
        self.act = nn.GELU() if mode == "serial" else nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(width, dim)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D) residual branch."""
        return self.up(self.drop(self.act(self.down(x))))

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on the block's MLP."""
        if self.mode == "serial":
            return output + self(output)
        return output + self.scale * self(args[0])

    def pre_hook(self, module: nn.Module, args: tuple) -> tuple:
        """Forward pre-hook on a classifier (encoder -> adapter -> head): its input h, the (B, D) pooled features,
        becomes h + up(GELU(down(h)))."""
        x = args[0]
        return (x + self(x), *args[1:])


class LoRAUpdate:
    """What LoRA layers share: ``lora_A`` (r, in, ...) and ``lora_B`` (out, r), B zero at start, the update
    ``scaling * B A`` in the wrapped layer's weight shape, and merging it in and out. Subclasses wrap a layer
    by sharing its ``weight`` and ``bias`` (not copies: the base stays one set of tensors, under its names)."""

    rank: int
    scaling: float
    merged: bool
    weight: nn.Parameter
    lora_A: nn.Parameter
    lora_B: nn.Parameter

    def _init_lora(self, base: nn.Module, a_shape: tuple[int, ...], rank: int, alpha: float, dropout: float) -> None:
        nn.Module.__init__(self)
        self.weight, self.bias = base.weight, base.bias
        self.rank, self.scaling, self.merged, self._unmerged = rank, alpha / rank, False, None
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, *a_shape, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(w.shape[0], rank, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def delta(self) -> torch.Tensor:
        """The update that merging adds to the weight, in the weight's shape."""
        return (self.lora_B @ self.lora_A.flatten(1)).view_as(self.weight) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold B A into W: inference then costs what the plain layer costs. The unmerged W is kept aside, so
        :meth:`unmerge` restores it bit for bit (W + d - d is not W in floating point)."""
        if not self.merged:
            self._unmerged = self.weight.detach().clone()
            self.weight += self.delta().to(self.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight.copy_(self._unmerged)
            self._unmerged = None
            self.merged = False

    def to_plain(self) -> nn.Module:
        """The plain layer (``nn.Linear`` / ``nn.Conv2d``) holding the merged weight."""
        self.merge()
        plain = self._plain()
        plain.weight, plain.bias = self.weight, self.bias
        self._unmerged = None
        return plain.to(self.weight.device)

    def _plain(self) -> nn.Module:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scaling={self.scaling:g}, merged={self.merged}"


class LoRALinear(LoRAUpdate, nn.Linear):
    """``W x + b + scaling * B A dropout(x)`` (Hu et al. 2021), with A (r, in). Built with :meth:`wrap`."""

    @classmethod
    def wrap(cls, linear: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> LoRALinear:
        out = cls.__new__(cls)
        out._init_lora(linear, (linear.in_features,), rank, alpha, dropout)
        out.in_features, out.out_features = linear.in_features, linear.out_features
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.linear(x, self.weight, self.bias)
        if self.merged:
            return base
        return base + F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B) * self.scaling

    def _plain(self) -> nn.Linear:
        return nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)


class LoRAConv2d(LoRAUpdate, nn.Conv2d):
    """LoRA on a convolution, as peft does for ``Conv2d``: A is a convolution with the layer's kernel, stride,
    padding and dilation from ``in`` to ``r`` channels, B a 1x1 convolution from ``r`` to ``out``; B A is then a
    kernel of the layer's shape and folds into it exactly. For conv stems, where the low-level features a new
    task needs (print dots, screen moire, noise) are made and a frozen stem may have learned to discard them."""

    @classmethod
    def wrap(cls, conv: nn.Conv2d, rank: int, alpha: float, dropout: float = 0.0) -> LoRAConv2d:
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(
                f"LoRA wraps plain convolutions (groups 1, zero padding); this one has groups {conv.groups} and "
                f"{conv.padding_mode!r} padding. Leave the stem frozen (adapter.stem_rank: 0)"
            )
        out = cls.__new__(cls)
        out._init_lora(conv, tuple(conv.weight.shape[1:]), rank, alpha, dropout)
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "transposed",
                     "output_padding", "groups", "padding_mode", "_reversed_padding_repeated_twice"):  # fmt: skip
            setattr(out, name, getattr(conv, name))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self._conv_forward(x, self.weight, self.bias)
        if self.merged:
            return base
        low = F.conv2d(self.lora_dropout(x), self.lora_A, None, self.stride, self.padding, self.dilation)
        return base + F.conv2d(low, self.lora_B[:, :, None, None]) * self.scaling

    def _plain(self) -> nn.Conv2d:
        return nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         self.dilation, bias=self.bias is not None)  # fmt: skip


class PromptTokens(nn.Module):
    """Visual prompt tuning (Jia et al. 2022): ``num`` learned tokens inserted after the ``prefix`` tokens
    (class/distillation) from the first adapted block on; ``deep`` gives every adapted block its own fresh set.

    Hooks put the prompts in before each block and take them out after it (carrying their states to the next
    block), so everything outside the blocks (pooling, intermediate outputs, dense features) sees the model's
    usual token layout.
    """

    def __init__(self, layers: list[int], num: int, dim: int, prefix: int, deep: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers, self.num, self.prefix, self.deep = list(layers), num, prefix, deep
        self.tokens = nn.Parameter(torch.empty(len(layers), num, dim))
        # VPT initialises uniformly with the patch projection's Xavier bound; 0.02 normal matches ViT's tokens.
        nn.init.trunc_normal_(self.tokens, std=0.02, a=-0.04, b=0.04)
        self.drop = nn.Dropout(dropout)
        self._carry: torch.Tensor | None = None  # (B, n, D) prompt states between two blocks

    def pre_hook(self, index: int, block: nn.Module, args: tuple) -> tuple:
        """Before block ``index``: (B, T, D) -> (B, T + n, D), fresh prompts at adapted blocks, else the carried."""
        x, rest = args[0], args[1:]
        if index in self.layers:
            prompts = self.drop(self.tokens[self.layers.index(index)]).unsqueeze(0).expand(x.shape[0], -1, -1)
        else:
            prompts = self._carry
        x = torch.cat([x[:, : self.prefix], prompts.to(x.dtype), x[:, self.prefix :]], dim=1)
        return (x, *rest)

    def post_hook(self, last: bool, block: nn.Module, args: tuple, output):
        """After a block: (B, T + n, D) -> (B, T, D), keeping the prompt states for the next block."""
        x = output[0] if isinstance(output, tuple) else output
        p, n = self.prefix, self.num
        self._carry = None if last else x[:, p : p + n]
        x = torch.cat([x[:, :p], x[:, p + n :]], dim=1)
        return (x, *output[1:]) if isinstance(output, tuple) else x
