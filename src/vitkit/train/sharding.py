"""Fully sharded data parallel training (PyTorch FSDP2, `fully_shard`) for models whose
parameters, gradients and AdamW moments do not fit on every rank (ViT-L/16, ViT-H/14).

Each encoder block is its own shard unit (gathered just before its forward and backward and
freed after), the rest of the model (embedding, final norm, head) is the root unit. With N
ranks each holds 1/N of every tensor and of the optimizer state; the arithmetic is that of
data parallel training at the same global batch. Checkpoints stay ordinary: the full weights
and optimizer state are gathered to rank 0 and saved as a `save_pretrained` folder and a
`last.pt` with tensors keyed by parameter name, and a resumed run scatters them back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..models import EncoderBlock
from .distributed import DistInfo

# Gathered to full tensors, on the CPU: rank 0 gets them, the other ranks an empty dict.
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
# Full tensors that every rank has read from the same file, sharded on load.
_SCATTER = StateDictOptions(full_state_dict=True)


def shard_model(model: nn.Module, dist: DistInfo, device: torch.device) -> None:
    """Shard `model` in place across the torchrun ranks: one unit per encoder block, then
    the root; call before the optimizer is built (it must see the sharded parameters)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.world_size,))
    for module in model.modules():
        if isinstance(module, EncoderBlock):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)


def is_sharded(model: nn.Module) -> bool:
    """Whether `model` was sharded by `shard_model`."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer | None = None
               ) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The full model (and optimizer) state on rank 0's CPU; a collective: every rank calls
    it, and ranks other than 0 get empty dicts."""
    weights = get_model_state_dict(model, options=_GATHER)
    moments = None if optimizer is None else get_optimizer_state_dict(model, optimizer,
                                                                       options=_GATHER)
    return weights, moments


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                    weights: dict[str, torch.Tensor], moments: dict[str, Any]) -> None:
    """Put full tensors (as `full_state` returned them, read by every rank) back into the
    sharded model and optimizer, each rank keeping its own shard."""
    set_model_state_dict(model, weights, options=_SCATTER)
    set_optimizer_state_dict(model, optimizer, moments, options=_SCATTER)


def submodule_weights(full: dict[str, torch.Tensor], model: nn.Module, part: nn.Module
                      ) -> dict[str, torch.Tensor]:
    """The entries of `model`'s full state dict that belong to its submodule `part` (for
    example the ViT inside a masked-patch pre-training model), with `part`'s own names."""
    if part is model:
        return full
    prefix = next(name for name, module in model.named_modules() if module is part) + "."
    return {key[len(prefix):]: value for key, value in full.items() if key.startswith(prefix)}


def check_fsdp(fsdp: bool, ema: bool, dist: DistInfo) -> None:
    """fsdp=True needs several ranks and no EMA (a second full model on every rank)."""
    if not fsdp:
        return
    if not dist.enabled:
        raise ValueError("fsdp=True shards the model across processes: launch with torchrun "
                         "--nproc-per-node N (N >= 2), or train with fsdp=False")
    if ema:
        raise ValueError("fsdp=True keeps no EMA of the weights (it would be a full copy on "
                         "every rank); pass ema=False")


def restore_weights(model: nn.Module, optimizer: torch.optim.Optimizer,
                    saved: dict[str, Any], fsdp: bool) -> None:
    """The saved model and optimizer state, into a sharded or a plain model as it was saved
    (any number of ranks: a sharded run's state is saved whole)."""
    was = bool(saved.get("fsdp"))
    if was != fsdp:
        raise ValueError(f"this run was trained {'with' if was else 'without'} sharding "
                         f"(fsdp={was}); resume it with fsdp={was}")
    if fsdp:
        load_full_state(model, optimizer, saved["model"], saved["optimizer"])
    else:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
