"""Analytic parameter and FLOP counts, for `vitkit models` and for model FLOP utilisation."""

from __future__ import annotations

from typing import Any

from .config import ViTConfig


def forward_flops(config: ViTConfig, img_size: tuple[int, int] | None = None) -> int:
    """Floating-point operations of one image's forward pass (2 per multiply-accumulate).

    Counts the matrix products (patch projection, qkv, attention scores and values, output
    projection, MLP, head), which are all but a fraction of a percent of the work, as
    `VisionTransformer.forward` computes them: its last block only for the tokens the head
    reads (ViT-B/16: 32.9 GFLOPs, against 35.1 with every token through every block).
    Hybrids and ResNets are counted by running them on the meta device (convolutions and
    matrix products).
    """
    if type(config) is not ViTConfig:
        return counted_flops(config, img_size)
    height, width = img_size or config.img_size
    patches = (height // config.patch_size) * (width // config.patch_size)
    tokens = patches + config.num_prefix_tokens
    dim, mlp = config.embed_dim, config.mlp_dim
    macs = patches * config.patch_size**2 * config.in_chans * dim  # Eq. (1), x_p E
    macs += (config.depth - 1) * block_macs(tokens, tokens, dim, mlp)
    macs += block_macs(tokens, config.head_tokens or tokens, dim, mlp)  # the last block
    if config.global_pool == "map":  # SigLIP's pooling: one query over every token
        macs += 2 * dim * dim + 2 * tokens * dim * dim + 2 * tokens * dim + 2 * dim * mlp
    head_in = dim
    if config.representation_size:
        macs += dim * config.representation_size
        head_in = config.representation_size
    macs += head_in * config.num_classes * (2 if config.distilled else 1)  # DeiT: two heads
    return 2 * macs


def block_macs(tokens: int, queries: int, dim: int, mlp: int) -> int:
    """Multiply-accumulates of one encoder block that computes `queries` of its `tokens`
    (every token but in the last block, which computes those the head reads)."""
    return (tokens * dim * 3 * dim  # qkv projection: every token is a key and a value
            + 2 * queries * tokens * dim  # q k^T and attention-weighted values
            + queries * dim * dim  # output projection
            + 2 * queries * dim * mlp)  # the two MLP layers


def counted_flops(config: Any, img_size: tuple[int, int] | None = None) -> int:
    """Forward FLOPs of any vitkit model, counted by torch's FlopCounterMode on a meta-device
    model and image (no memory, no arithmetic)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .build import build_model

    height, width = img_size or config.img_size
    with torch.device("meta"):
        model = build_model(config).eval()
        images = torch.zeros(1, config.in_chans, height, width)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(images)
    return int(counter.get_total_flops())


def parameter_count(config: ViTConfig) -> int:
    """The number of parameters of `VisionTransformer(config)`, counted without building it
    (so `vitkit models` needs no torch)."""
    dim, mlp, patch = config.embed_dim, config.mlp_dim, config.patch_size
    count = patch * patch * config.in_chans * dim + dim * (not config.pre_norm)  # E
    count += dim * config.num_prefix_tokens  # x_class, distillation and register tokens
    count += (config.num_pos_prefix_tokens + config.num_patches) * dim  # E_pos
    count += 2 * dim * config.pre_norm  # CLIP's norm_pre
    mlp_params = dim * mlp + mlp + mlp * dim + dim
    block = (2 * dim  # norm1
             + dim * 3 * dim + 3 * dim * config.qkv_bias  # qkv
             + dim * dim + dim  # attention output projection
             + 2 * dim  # norm2
             + mlp_params  # the MLP
             + (2 * dim if config.init_values else 0))  # layer scale
    count += config.depth * block + 2 * dim  # blocks, then norm or fc_norm
    if config.global_pool == "map":  # latent query, q, kv, proj, norm and MLP
        count += dim + 4 * dim * dim + 4 * dim + 2 * dim + mlp_params
    head_in = dim
    if config.representation_size:
        count += dim * config.representation_size + config.representation_size
        head_in = config.representation_size
    if config.num_classes:
        heads = 2 if config.distilled else 1
        count += heads * (head_in * config.num_classes + config.num_classes)
    return count
