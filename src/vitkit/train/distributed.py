"""Data-parallel training under `torchrun`: process-group setup (gloo on CPU, nccl on GPU)
and sharding of each global batch across ranks, so N processes at global batch B compute
what one process at batch B would."""

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
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """True unless this is a torchrun worker of rank > 0 (which should neither print nor
    write the run's files)."""
    return int(os.environ.get("RANK", "0")) == 0


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in RANK/WORLD_SIZE; a no-op without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return info


def shard(batch_indices: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's part of a global batch: a contiguous 1/world slice."""
    if not info.enabled:
        return batch_indices
    if len(batch_indices) % info.world_size:
        raise ValueError(
            f"global batch {len(batch_indices)} is not divisible by {info.world_size} processes; "
            "choose a batch size that is"
        )
    return batch_indices.chunk(info.world_size)[info.rank]


def mean_across(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of a tensor over all ranks (for logging)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / info.world_size


def min_across(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The elementwise minimum of a tensor over all ranks."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return value


def from_rank_zero(flag: bool, info: DistInfo, device: torch.device | str = "cpu") -> bool:
    """Rank 0's value of `flag` on every rank (so that choices made by timing agree)."""
    if not info.enabled:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item() > 0)


def cleanup(info: DistInfo) -> None:
    """Leave the process group once every rank is here: after rank 0's last write, so no
    rank reads the run folder before it is complete."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
