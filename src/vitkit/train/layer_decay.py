"""Layer-wise learning-rate decay for fine-tuning (BEiT, MAE): the deeper a parameter sits, the
larger its learning rate. With L encoder blocks and decay R, a parameter at depth d trains at
lr * R^(L+1-d), where

    depth 0      everything before the blocks: patch embedding (a hybrid's CNN backbone too),
                 class, register and distillation tokens, position embeddings, norm_pre
    depth i + 1  block i (`blocks.i.*`, its layer scales and LoRA adapters included)
    depth L + 1  everything after the blocks: final norm, fc_norm, pre-logits, attention-pool
                 and classifier heads (scale 1)

Depths come from the model's structure (the names and their order), never from a count of the
trainable parameters, so frozen parameters are left out without moving anyone else's scale.
"""

from __future__ import annotations

from torch import nn


def encoder_blocks(model: nn.Module) -> tuple[str, int]:
    """The name of the model's sequence of encoder blocks (the shallowest module called
    `blocks`, so a CNN backbone's own `blocks` are not taken for it) and its length."""
    found = [(name.count("."), name, len(module)) for name, module in model.named_modules()
             if name.rsplit(".", 1)[-1] == "blocks"
             and isinstance(module, (nn.Sequential, nn.ModuleList))]
    if not found:
        raise ValueError(f"{type(model).__name__} has no encoder blocks to decay the learning "
                         "rate over; train it with layer_decay=1")
    _, name, length = min(found)
    return name, length


def parameter_depths(model: nn.Module) -> tuple[dict[str, int], int]:
    """Every parameter's depth (0 before the blocks, i + 1 in block i, L + 1 after them; by
    the order PyTorch registers them), frozen ones included, and the number of blocks L."""
    blocks, count = encoder_blocks(model)
    prefix = blocks + "."
    depths: dict[str, int] = {}
    after = False
    for name, _ in model.named_parameters():
        if name.startswith(prefix):
            depths[name] = int(name[len(prefix):].split(".", 1)[0]) + 1
            after = True
        else:
            depths[name] = count + 1 if after else 0
    return depths, count


def lr_scales(model: nn.Module, decay: float) -> dict[str, float]:
    """Each trainable parameter's learning-rate multiplier R^(L+1-depth); frozen parameters
    are left out (and change nobody else's multiplier)."""
    depths, count = parameter_depths(model)
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    return {name: decay ** (count + 1 - depth) for name, depth in depths.items()
            if name in trainable}
