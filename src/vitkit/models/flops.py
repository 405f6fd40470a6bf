"""Analytic parameter and FLOP counts, for `vitkit models` and for model FLOP utilisation."""

from __future__ import annotations

from typing import Any

from .config import ViTConfig


def forward_flops(config: ViTConfig, img_size: tuple[int, int] | None = None) -> int:
    """Floating-point operations of one image's forward pass (2 per multiply-accumulate).

    Counts the matrix products (patch projection, qkv, attention scores and values, output
    projection, MLP, head), which are all but a fraction of a percent of the work. Hybrids and
    ResNets are counted by running them on the meta device (convolutions and matrix products).
    """
    if type(config) is not ViTConfig:
        return counted_flops(config, img_size)
    height, width = img_size or config.img_size
    patches = (height // config.patch_size) * (width // config.patch_size)
    tokens = patches + config.num_prefix_tokens
    dim, mlp = config.embed_dim, config.mlp_dim
    macs = patches * config.patch_size**2 * config.in_chans * dim  # Eq. (1), x_p E
    per_block = (
        tokens * dim * 3 * dim  # qkv projection
        + 2 * tokens * tokens * dim  # q k^T and attention-weighted values
        + tokens * dim * dim  # output projection
        + 2 * tokens * dim * mlp  # the two MLP layers
    )
    macs += config.depth * per_block
    head_in = dim
    if config.representation_size:
        macs += dim * config.representation_size
        head_in = config.representation_size
    macs += head_in * config.num_classes
    return 2 * macs


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
