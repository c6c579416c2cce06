"""How the model runs on the processes and kernels of a run: data-parallel wrapping, compilation and the
attention kernel. Under ``torchrun``, ``train.parallel: ddp`` replicates the model (DistributedDataParallel) and
``fsdp`` shards it (torch's ``fully_shard``, one unit per block as the model's ``group_matcher`` names them)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from vitkit.utils.distributed import DistInfo


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device, parallel: str = "ddp") -> nn.Module:
    """The module to call in training: ``model`` itself in one process, else its DDP wrapper or the sharded model.

    ``fully_shard`` shards ``model`` in place, so after it the optimiser must be built from its parameters.
    """
    if not info.enabled:
        return model
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for unit in shard_units(model):
            fully_shard(unit)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The sub-modules FSDP shards one by one: those a ``group_matcher`` "blocks" rule matches whole."""
    if not hasattr(model, "group_matcher"):
        return []
    spec = model.group_matcher(coarse=True).get("blocks", [])
    patterns = [re.compile(p) for p, _ in ([(spec, None)] if isinstance(spec, str) else spec)]
    return [m for name, m in model.named_modules() if name and any(p.fullmatch(name) for p in patterns)]


@contextlib.contextmanager
def no_grad_sync(wrapped: nn.Module, skip: bool) -> Iterator[None]:
    """Skip gradient synchronisation for this micro-batch (all but the last of an accumulation)."""
    if skip and hasattr(wrapped, "no_sync"):  # DDP
        with wrapped.no_sync():
            yield
    elif skip and hasattr(wrapped, "set_requires_gradient_sync"):  # fully_shard
        wrapped.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            wrapped.set_requires_gradient_sync(True)
    else:
        yield


def attention_backend(name: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A context-manager factory pinning ``scaled_dot_product_attention`` to one kernel ('auto': no pinning)."""
    if name == "auto":
        return contextlib.nullcontext
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {
        "math": SDPBackend.MATH,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    return lambda: sdpa_kernel(backend[name])


def is_sharded(model: nn.Module) -> bool:
    """Whether ``fully_shard`` sharded ``model`` (its parameters are DTensors)."""
    return type(model).__name__.startswith("FSDP")


def reshard(model: nn.Module) -> None:
    """Back to sharded parameters after forwards without a backward (evaluation): FSDP keeps the root's gathered
    after its forward, which the optimiser and the state-dict helpers would not recognise."""
    if is_sharded(model):
        for module in model.modules():
            if is_sharded(module):
                module.reshard()


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model, optimiser) state dicts with whole tensors on the CPU, as one process would have them.

    A sharded model's are gathered (a collective: every rank must call this; rank 0 receives them, the others get
    empty dicts); its optimiser state is keyed by parameter name ("fqn" format) instead of by position.
    """
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    optim = get_optimizer_state_dict(model, optimizer, options=options)
    return full_weights(model), {**optim, "format": "fqn"} if optim else {}


def full_weights(model: nn.Module) -> dict[str, Any]:
    """The model's state dict with whole tensors (gathered on rank 0 when sharded: a collective)."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict, optim: dict) -> None:
    """Inverse of :func:`full_state`, for a sharded or a plain model, from either optimiser format."""
    fqn = optim.get("format") == "fqn"
    if not is_sharded(model) and not fqn:
        model.load_state_dict(weights)
        optimizer.load_state_dict(optim)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, weights, options=options)
    if not fqn:  # a one-process checkpoint resumed sharded: key its state by name (groups list their names)
        names = [n for group in optimizer.param_groups for n in group["names"]]
        optim = {
            "state": {names[i]: slot for i, slot in optim["state"].items()},
            "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in optim["param_groups"]],
        }
    set_optimizer_state_dict(model, optimizer, {k: v for k, v in optim.items() if k != "format"}, options=options)
