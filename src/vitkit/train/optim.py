"""Optimizers with ViT's parameter groups, and the learning-rate schedule as a plain function."""

from __future__ import annotations

import math

import torch
from torch import nn

from .recipes import Recipe


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed weights, and biases/norms/pos_embed/cls_token with no decay.

    One-dimensional parameters are biases and LayerNorm scales; the model's
    `no_weight_decay()` names the rest (position embeddings, class token).
    """
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(".bias") or name in skip:
            no_decay.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over `param_groups(model)`, fused (one kernel for all parameters
    instead of several passes per tensor) where PyTorch has a fused kernel for the device."""
    groups = param_groups(model, recipe.weight_decay)
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
    for group in optimizer.param_groups:
        group["lr"] = lr
