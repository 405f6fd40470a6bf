"""LoRA (Hu et al. 2021) through PEFT: low-rank adapters W + (alpha / r) B A on every encoder
block's fused `attn.qkv`, `attn.proj`, `mlp.fc1` and `mlp.fc2`; only the adapters and the
classifier head train. The training state keeps the adapters apart (an exact resume); the
saved checkpoint has them merged into the weights, an ordinary model for eval, predict,
export and serve."""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..errors import require
from .recipes import Recipe

# The Linears of the encoder blocks (the fused qkv included), wherever the blocks sit (a
# masked-patch model's `vit.blocks`); never `patch_embed.proj` or an attention-pool head.
TARGETS = r"(.*\.)?blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"
ADAPTER = "default"
log = logging.getLogger("vitkit")


def add_lora(model: nn.Module, recipe: Recipe) -> nn.Module:
    """Inject LoRA adapters of `recipe.lora_rank` into `model` in place and freeze all but
    them and the head(s); returns the model."""
    peft = require("peft", "lora", "LoRA (lora_rank=)")
    config = peft.LoraConfig(r=recipe.lora_rank, lora_alpha=recipe.lora_alpha,
                             lora_dropout=recipe.lora_dropout, target_modules=TARGETS,
                             bias="none")
    try:
        peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    except ValueError as error:  # no module matched: not a ViT
        raise ValueError(f"{type(model).__name__} has no encoder blocks with qkv, proj, fc1 "
                         "and fc2 Linears for LoRA; train it with lora_rank=0") from error
    for name, param in model.named_parameters():
        param.requires_grad_(".lora_" in name or _in_head(name))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("LoRA rank %d on %d Linears: %s of %s parameters train", recipe.lora_rank,
             len(lora_layers(model)), f"{trainable:,}",
             f"{sum(p.numel() for p in model.parameters()):,}")
    return model


def _in_head(name: str) -> bool:
    """Whether a parameter belongs to a classifier head (`head`, `head_dist`, `colour_head`)."""
    modules = name.split(".")[:-1]
    return any(m == "head" or m.startswith("head_") or m.endswith("_head") for m in modules)


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules of `model` that carry LoRA adapters, by name."""
    return {name: module for name, module in model.named_modules()
            if hasattr(module, "lora_A") and hasattr(module, "base_layer")}


def has_lora(model: nn.Module) -> bool:
    """Whether `model` carries LoRA adapters."""
    return bool(lora_layers(model))


def lora_parameter_count(model: nn.Module, rank: int) -> int:
    """What LoRA predicts for the adapters of `model`'s target Linears: rank * (in + out)
    each (the count `add_lora` makes trainable, besides the head)."""
    return sum(rank * (m.base_layer.in_features + m.base_layer.out_features)
               for m in lora_layers(model).values())


@torch.no_grad()
def merged_state(model: nn.Module, state: dict[str, torch.Tensor] | None = None
                 ) -> dict[str, torch.Tensor]:
    """`model`'s state dict (or `state`, the same keys gathered) with every adapter merged:
    W + scaling * B A under the plain names (`blocks.0.attn.qkv.weight`), no LoRA tensors."""
    state = dict(model.state_dict() if state is None else state)
    for name, layer in lora_layers(model).items():
        a = state.pop(f"{name}.lora_A.{ADAPTER}.weight")
        b = state.pop(f"{name}.lora_B.{ADAPTER}.weight")
        base = state.pop(f"{name}.base_layer.weight")
        delta = (b.float() @ a.float()) * layer.scaling[ADAPTER]
        state[f"{name}.weight"] = (base.float() + delta).to(base.dtype)
        if f"{name}.base_layer.bias" in state:
            state[f"{name}.bias"] = state.pop(f"{name}.base_layer.bias")
    return state
