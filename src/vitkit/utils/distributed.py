"""Processes under ``torchrun``: joining the group and the few collectives vitkit needs.

``torchrun --nproc_per_node N -m vitkit train ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; without them the run is
a single process and every helper here is a no-op. CPU runs use gloo, GPU runs nccl.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: torch.device) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (once); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return info


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo | None) -> torch.Tensor:
    """Sum ``tensor`` over processes in place (returned for chaining)."""
    if info is not None and info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: object, info: DistInfo) -> list[object]:
    """Every process's ``obj``, in rank order (a one-element list in a single process)."""
    if not info.enabled:
        return [obj]
    gathered: list[object] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: object, info: DistInfo) -> object:
    """Rank 0's value of ``obj`` on every process."""
    if not info.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
