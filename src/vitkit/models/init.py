"""Weight initialisation for training from scratch, following the original JAX implementation."""

from __future__ import annotations

import math

import torch
from torch import nn


def init_vit_weights(model: nn.Module) -> None:
    """Initialise a VisionTransformer as the paper's code does.

    Linear layers get Xavier-uniform weights and zero biases (the MLP's biases a tiny normal);
    the patch projection a LeCun normal; E_pos a truncated normal of std 0.02; the [class]
    token and the classification head zeros.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            if name in ("head", "head_dist"):
                nn.init.zeros_(module.weight)
                nn.init.zeros_(module.bias)
                continue
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                if ".mlp." in f".{name}":
                    nn.init.normal_(module.bias, std=1e-6)
                else:
                    nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * math.prod(module.kernel_size)
            nn.init.trunc_normal_(module.weight, std=math.sqrt(1.0 / fan_in))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    with torch.no_grad():
        nn.init.trunc_normal_(model.pos_embed, std=0.02)
        if model.cls_token is not None:
            nn.init.zeros_(model.cls_token)
        for token in (model.dist_token, model.reg_token):  # DeiT's and DINOv2's, as timm's
            if token is not None:
                nn.init.trunc_normal_(token, std=0.02)
