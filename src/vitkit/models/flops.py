"""Analytic parameter and FLOP counts, for `vitkit models` and for model FLOP utilisation."""

from __future__ import annotations

from .config import ViTConfig


def forward_flops(config: ViTConfig, img_size: tuple[int, int] | None = None) -> int:
    """Floating-point operations of one image's forward pass (2 per multiply-accumulate).

    Counts the matrix products (patch projection, qkv, attention scores and values, output
    projection, MLP, head), which are all but a fraction of a percent of the work.
    """
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
