"""Optimizers with ViT's parameter groups, and the learning-rate schedule as a plain function."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layer_decay import lr_scales
from .recipes import Recipe


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0
                 ) -> list[dict]:
    """The trainable parameters in groups by weight decay and learning-rate scale.

    Biases, norm scales (one-dimensional), position embeddings and tokens (class, register,
    distillation, mask) get no weight decay; the model's `no_weight_decay()` names any other.
    Each group's `lr_scale` multiplies the scheduled lr (`set_lr`): 1 everywhere, or with
    `layer_decay` < 1 the layer-wise scales of `layer_decay.lr_scales`. Frozen parameters
    are left out.
    """
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    scales = lr_scales(model, layer_decay) if layer_decay != 1 else {}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        no_decay = (param.ndim <= 1 or leaf in ("bias", "pos_embed") or leaf.endswith("_token")
                    or name in skip)
        groups.setdefault((scales.get(name, 1.0), not no_decay), []).append(param)
    if not scales:  # the two groups of a run without layer decay, decayed first
        groups = {key: groups.get(key, []) for key in ((1.0, True), (1.0, False))}
    return [{"params": params, "weight_decay": weight_decay if decayed else 0.0,
             "lr_scale": scale}
            for (scale, decayed), params in sorted(groups.items(), key=lambda kv: (
                kv[0][0], not kv[0][1]))]


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over `param_groups(model)`, fused (one kernel for all parameters
    instead of several passes per tensor) where PyTorch has a fused kernel for the device;
    with `recipe.layer_decay` < 1, one group per depth (see `layer_decay.py`)."""
    groups = param_groups(model, recipe.weight_decay, recipe.layer_decay)
    betas = (recipe.beta1, recipe.beta2)
    device = next(model.parameters()).device.type
    fused = {"fused": True} if device in ("cpu", "cuda") else {}
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, **fused)
    if recipe.optimizer == "adam":  # the paper's Adam, with decoupled weight decay
        return torch.optim.Adam(groups, lr=recipe.lr, betas=betas, decoupled_weight_decay=True,
                                **fused)
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=betas, **fused)


def lr_at(step: int, total_steps: int, warmup_steps: int, recipe: Recipe) -> float:
    """The learning rate for optimizer step `step` (0-based): linear warmup from ~0 to the peak,
    then cosine or linear decay to `min_lr_ratio * lr` at `total_steps`."""
    peak, floor = recipe.lr, recipe.lr * recipe.min_lr_ratio
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    if recipe.schedule == "linear":
        return floor + (peak - floor) * (1.0 - progress)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Each group's learning rate: `lr` times the group's `lr_scale` (layer-wise decay)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
