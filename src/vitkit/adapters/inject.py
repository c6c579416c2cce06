"""Adding adapters to a built model from outside, freezing its backbone, and merging LoRA back.

Blocks are found by module path, as the model's family descriptor says (``blocks.3`` in a ViT,
``layers.1.blocks.0`` in a Swin); any other model whose blocks have ``attn`` and ``mlp`` children works too.
A block's ``mlp`` gets a forward hook (bottleneck, parallel), its ``attn.qkv`` / ``attn.proj`` (and
``mlp.fc1`` / ``mlp.fc2``) linear layers are swapped for :class:`LoRALinear` (same parameter names), the patch
embedding's convolutions for :class:`LoRAConv2d` (``stem_rank``), prompt tokens hook the blocks' inputs, and the
head adapter (``head_adapter``) hooks the classifier's input: ``model.head`` (timm's name for the classifier that
``reset_classifier`` replaces) and DeiT's ``head_dist``, which share it. ``models/`` is not touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

from torch import nn

from vitkit.adapters.config import AdapterConfig
from vitkit.adapters.modules import Bottleneck, LoRAConv2d, LoRALinear, LoRAUpdate, PromptTokens
from vitkit.config.base import ModelConfig
from vitkit.families import family_of

LORA_ATTN = ("attn.qkv", "attn.proj")
LORA_MLP = ("mlp.fc1", "mlp.fc2")
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)  # a stem's norms train with stem_rank
PROMPT_NAME = "prompt_tokens"
HEAD_ADAPTER_NAME = "head_adapter"  # the bottleneck between the encoder and the head (state dict head_adapter.*)
CLASSIFIERS = ("head", "head_dist")  # timm's classifier names; the head adapter transforms what they read
CONFIG_ATTR = "adapter_config"  # where the model remembers what was added (for saving)


@dataclass
class TrainableReport:
    """Trainable parameters against all parameters of the adapted model."""

    trainable: int
    total: int

    @property
    def share(self) -> float:
        return self.trainable / max(self.total, 1)

    def __str__(self) -> str:
        return f"trainable parameters: {self.trainable:,} of {self.total:,} ({100 * self.share:.2f}%)"


def trainable_parameters(model: nn.Module) -> TrainableReport:
    """How many parameters train (``requires_grad``) and their share of the whole model."""
    params = list(model.parameters())
    return TrainableReport(sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


def find_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, block) for every Transformer block in forward order, by the family's path pattern."""
    pattern = family_of(model).block_pattern if isinstance(getattr(model, "cfg", None), ModelConfig) else None
    if pattern is not None:
        found = [(n, m) for n, m in model.named_modules() if re.fullmatch(pattern, n)]
        if found:
            return found
    found = [(n, m) for n, m in model.named_modules() if hasattr(m, "attn") and hasattr(m, "mlp")]
    if not found:
        raise ValueError(
            f"found no Transformer blocks (modules with .attn and .mlp) in {type(model).__name__}; give its family "
            "descriptor a block_pattern (vitkit.families.Family)"
        )
    return found


def _select(cfg: AdapterConfig, depth: int) -> list[int]:
    if cfg.layers is None:
        return list(range(depth))
    bad = [i for i in cfg.layers if not -depth <= i < depth]
    if bad:
        raise ValueError(f"adapter.layers {bad} out of range for a model with {depth} blocks; use 0..{depth - 1}")
    return sorted({i % depth for i in cfg.layers})


def _check_width(cfg: AdapterConfig, path: str, width: int, what: str | None = None) -> None:
    what = what or ("rank" if cfg.method == "lora" else "bottleneck")
    value = getattr(cfg, what)
    if value > width:
        raise ValueError(
            f"adapter {what} {value} exceeds the width {width} of {path}; use adapter.{what} <= {width} "
            "(a few percent of it is typical)"
        )


def replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` at the dotted ``path`` under ``root`` (where LoRA layers go in and plain layers come back)."""
    parent_path, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent_path), leaf, new)


def _add_lora(cfg: AdapterConfig, path: str, block: nn.Module) -> None:
    for target in LORA_ATTN + (LORA_MLP if cfg.lora_mlp else ()):
        linear = block.get_submodule(target)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"{path}.{target} is a {type(linear).__name__}, not a Linear layer LoRA can wrap")
        _check_width(cfg, f"{path}.{target}", min(linear.in_features, linear.out_features))
        replace_module(block, target, LoRALinear.wrap(linear, cfg.rank, cfg.alpha, cfg.dropout))


def _add_stem_lora(cfg: AdapterConfig, model: nn.Module) -> tuple[str, ...]:
    """LoRA on every convolution of the patch embedding; returns the stem's normalisation layers (as name
    prefixes), which then train too: the adapted convolutions no longer match their frozen statistics."""
    stems = [(n, m) for n, m in model.named_modules() if n == "patch_embed" or n.endswith(".patch_embed")]
    layers = [(f"{stems[0][0]}.{n}", m) for n, m in stems[0][1].named_modules() if n] if stems else []
    convs = [(path, m) for path, m in layers if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(
            f"adapter.stem_rank: {type(model).__name__} has no patch embedding with convolutions to adapt; set "
            "adapter.stem_rank: 0"
        )
    for path, conv in convs:
        if type(conv) is not nn.Conv2d:
            raise ValueError(
                f"adapter.stem_rank: {path} is a {type(conv).__name__}, whose forward LoRA would bypass; set "
                "adapter.stem_rank: 0 for this model"
            )
        _check_width(cfg, path, min(conv.weight[0].numel(), conv.out_channels), "stem_rank")
        replace_module(model, path, LoRAConv2d.wrap(conv, cfg.stem_rank, cfg.alpha, cfg.dropout))
    return tuple(f"{path}." for path, m in layers if isinstance(m, NORMS))


def _add_bottleneck(cfg: AdapterConfig, path: str, block: nn.Module) -> None:
    dim = block.mlp.fc2.out_features
    _check_width(cfg, path, dim)
    mode = "serial" if cfg.method == "bottleneck" else "parallel"
    adapter = Bottleneck(dim, cfg.bottleneck, mode, cfg.scale, cfg.dropout).to(block.mlp.fc2.weight.device)
    block.adapter = adapter
    block.mlp.register_forward_hook(adapter.hook)


def _add_prompts(cfg: AdapterConfig, model: nn.Module, blocks: list[tuple[str, nn.Module]], chosen: list[int]) -> None:
    if not hasattr(model, "num_prefix_tokens"):
        raise ValueError(
            f"prompt tuning needs a plain token sequence (a ViT); {type(model).__name__} has none. Use lora, "
            "bottleneck or parallel adapters for it"
        )
    if getattr(model.cfg, "pos_embed", None) == "relative":
        raise ValueError(
            "prompt tuning adds tokens to the sequence, and a relative position bias (pos_embed='relative') has no "
            "entries for them; use lora, bottleneck or parallel adapters with this model"
        )
    dim = blocks[0][1].mlp.fc2.out_features
    layers = chosen if cfg.deep else chosen[:1]
    prompts = PromptTokens(layers, cfg.num_prompts, dim, model.num_prefix_tokens, cfg.deep, cfg.dropout)
    setattr(model, PROMPT_NAME, prompts.to(blocks[0][1].mlp.fc2.weight.device))
    for i in range(layers[0], len(blocks)):
        blocks[i][1].register_forward_pre_hook(partial(prompts.pre_hook, i))
        blocks[i][1].register_forward_hook(partial(prompts.post_hook, i == len(blocks) - 1))


def _add_head_adapter(cfg: AdapterConfig, model: nn.Module) -> None:
    """encoder -> adapter -> head: a serial bottleneck on the classifier's input, the pooled and normalised
    features (``num_features`` wide) that ``forward_head`` hands to ``head`` (in a ViT after pooling, ``fc_norm``
    and ``pre_logits``). ``forward_features`` is unchanged, and so is a ViT's ``forward_head(pre_logits=True)``
    (its head is the bare Linear); Swin's head module returns its adapted input as the pre-logits."""
    heads = [getattr(model, name, None) for name in CLASSIFIERS]
    heads = [h for h in heads if isinstance(h, nn.Module) and type(h).forward is not nn.Module.forward]
    width = getattr(model, "num_features", None)
    if not heads or not isinstance(width, int):
        raise ValueError(
            f"adapter.head_adapter goes in front of the classifier `head` on `num_features` pooled features, which "
            f"{type(model).__name__} does not call that way; set adapter.head_adapter: 0 for this model"
        )
    _check_width(cfg, "the features the head reads", width, "head_adapter")
    device = next(model.parameters()).device
    adapter = Bottleneck(width, cfg.head_adapter, "serial", dropout=cfg.dropout).to(device)
    setattr(model, HEAD_ADAPTER_NAME, adapter)
    for head in heads:
        head.register_forward_pre_hook(adapter.pre_hook)


def _frozen_statistics(module: nn.Module, args: tuple) -> None:
    """A frozen backbone's BatchNorm (the conv stem's) keeps its running statistics: it normalises as in
    evaluation, also while the adapters train, so the backbone (and its hash) stays exactly as loaded."""
    module.training = False


def add_adapters(model: nn.Module, cfg: AdapterConfig | dict) -> TrainableReport:
    """Add ``cfg``'s adapters to ``model`` in place and freeze everything else except ``cfg.trainable``
    (the head). Returns the trainable-parameter report. ``method: none`` leaves the model fully trainable."""
    cfg = AdapterConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    if getattr(model, CONFIG_ATTR, None) is not None:
        raise ValueError("this model already has adapters; build a fresh model to add another set")
    if cfg.method == "none":
        return trainable_parameters(model)
    blocks = find_blocks(model)
    chosen = _select(cfg, len(blocks))
    for p in model.parameters():
        p.requires_grad_(False)
    if cfg.method == "prompt":
        _add_prompts(cfg, model, blocks, chosen)
    elif cfg.method != "head":
        add = _add_lora if cfg.method == "lora" else _add_bottleneck
        for i in chosen:
            add(cfg, *blocks[i])
    if cfg.stem_rank:
        cfg = cfg.replace(trainable=tuple(dict.fromkeys(cfg.trainable + _add_stem_lora(cfg, model))))
    if cfg.head_adapter:
        _add_head_adapter(cfg, model)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not f"{name}.".startswith(cfg.trainable):
            module.register_forward_pre_hook(_frozen_statistics)
    for name in adapter_keys(model):
        model.get_parameter(name).requires_grad_(True)
    for name, p in model.named_parameters():
        if name.startswith(cfg.trainable):
            p.requires_grad_(True)
    setattr(model, CONFIG_ATTR, cfg)
    return trainable_parameters(model)


def adapter_keys(model: nn.Module) -> list[str]:
    """State-dict names of the adapter parameters (not the head)."""
    keys = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, (Bottleneck, PromptTokens)):
            keys += [prefix + k for k, _ in module.named_parameters()]
        elif isinstance(module, LoRAUpdate):
            keys += [prefix + "lora_A", prefix + "lora_B"]
    return keys


def lora_layers(model: nn.Module) -> list[tuple[str, LoRAUpdate]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRAUpdate)]


def set_merged(model: nn.Module, merged: bool) -> None:
    """Merge every LoRA update into its weight (``True``) or take it out again (``False``)."""
    for _, layer in lora_layers(model):
        layer.merge() if merged else layer.unmerge()


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold LoRA into the base weights and drop the LoRA layers: a plain model of the base architecture,
    which ``save_pretrained`` writes as an ordinary checkpoint. Other methods cannot be folded (they are
    nonlinear or change the token count) and raise."""
    cfg = getattr(model, CONFIG_ATTR, None)
    if cfg is None:
        return model
    if cfg.method not in ("lora", "head"):
        raise ValueError(
            f"{cfg.method} adapters cannot be merged into the base weights (only LoRA is linear); export the "
            "adapted model to ONNX/TorchScript instead, or train LoRA adapters"
        )
    if cfg.head_adapter:
        raise ValueError(
            "adapter.head_adapter is a nonlinear bottleneck in front of the head and cannot be merged into the base "
            "weights; export the adapted model to ONNX/TorchScript instead, or train without head_adapter"
        )
    for name, layer in lora_layers(model):
        replace_module(model, name, layer.to_plain())
    setattr(model, CONFIG_ATTR, None)
    for p in model.parameters():
        p.requires_grad_(True)
    return model
