"""Attention analyses of the paper: attention maps, attention rollout (Figure 6) and mean
attention distance (Figure 7, right), computed from `forward_with_attention`."""

from __future__ import annotations

from collections.abc import Collection

import torch

from ..models import VisionTransformer, evaluating

HEAD_FUSIONS = ("mean", "max", "min")


def _on_model(model: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """The images on the model's device and in its dtype, validated against the model."""
    model.check_input(images)
    param = model.pos_embed
    return images.to(device=param.device, dtype=param.dtype)


def attention_maps(
    model: VisionTransformer, images: torch.Tensor, layers: Collection[int] | None = None
) -> dict[int, torch.Tensor]:
    """Attention probabilities {layer: (B, heads, T, T)} in float32 for `layers` (None: all).

    Only the layers asked for leave the fused attention path, so memory grows with what is
    asked for, not with depth. T = prefix tokens + patches; negative layers count from the end.
    """
    depth = len(model.blocks)
    if layers is not None:
        bad = [layer for layer in layers if not -depth <= layer < depth]
        if bad:
            raise ValueError(f"layers {bad} do not exist; this model has layers 0..{depth - 1}")
    with evaluating(model):
        _, maps = model.forward_with_attention(_on_model(model, images), layers)
    return {layer: probs.float() for layer, probs in sorted(maps.items())}


def _fuse_heads(probs: torch.Tensor, head_fusion: str) -> torch.Tensor:
    """(B, heads, T, T) -> (B, T, T) by the mean, max or min over heads."""
    if head_fusion == "mean":
        return probs.mean(dim=1)
    if head_fusion == "max":
        return probs.amax(dim=1)
    if head_fusion == "min":
        return probs.amin(dim=1)
    raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, not {head_fusion!r}")


def _discard_lowest(attn: torch.Tensor, ratio: float, num_prefix: int) -> torch.Tensor:
    """Zero the `ratio` weakest attention weights to patch keys in each row (Abnar's option).

    Weights to the prefix ([class]) token and each token's weight to itself are kept.
    """
    if ratio <= 0.0:
        return attn
    tokens = attn.shape[-1]
    patch_part = attn[..., num_prefix:]
    drop = int(ratio * patch_part.shape[-1])
    if drop == 0:
        return attn
    lowest = patch_part.topk(drop, dim=-1, largest=False).indices + num_prefix
    mask = torch.ones_like(attn).scatter_(-1, lowest, 0.0)
    eye = torch.eye(tokens, dtype=torch.bool, device=attn.device)
    mask = torch.where(eye, torch.ones_like(mask), mask)
    return attn * mask


def attention_rollout(
    model: VisionTransformer,
    images: torch.Tensor,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    batch_size: int = 32,
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020), as used for the paper's Figure 6: (B, gh, gw).

    Per layer: fuse heads (mean by default), optionally zero the weakest `discard_ratio` of
    each row's patch weights, add the identity for the residual path, renormalise rows; then
    multiply through the layers. Returns the [class] token's rolled-out attention to each patch
    (for average-pooled or class-token-free models, the mean over patch tokens' rows). Values
    are the raw rollout weights, not rescaled; uniform attention gives a uniform map.
    """
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(
            f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, not {head_fusion!r}"
        )
    grid = model.check_input(images)
    chunks = [
        _rollout_rows(model, images[start : start + batch_size], head_fusion, discard_ratio)
        for start in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(chunks).reshape(-1, *grid)


def _rollout_rows(
    model: VisionTransformer, images: torch.Tensor, head_fusion: str, discard_ratio: float
) -> torch.Tensor:
    """The rolled-out attention of the pooled token to each patch, (B, N), for one batch."""
    num_prefix = model.config.num_prefix_tokens
    maps = attention_maps(model, images)
    rollout = None
    for layer in sorted(maps):
        attn = _discard_lowest(_fuse_heads(maps[layer], head_fusion), discard_ratio, num_prefix)
        attn = attn + torch.eye(attn.shape[-1], device=attn.device)  # the residual path
        attn = attn / attn.sum(dim=-1, keepdim=True)
        rollout = attn if rollout is None else attn @ rollout
    assert rollout is not None  # a ViT has at least one layer
    if model.attn_pool is not None:  # SigLIP: the pooling query's attention, rolled out
        weights = _pool_weights(model, images, head_fusion).to(rollout.device)
        rows = (weights.unsqueeze(1) @ rollout)[:, 0]
    elif model.config.distilled:  # DeiT: the two heads' tokens, averaged as the heads are
        rows = (rollout[:, 0] + rollout[:, 1]) / 2
    elif num_prefix and model.config.global_pool == "token":
        rows = rollout[:, 0]  # the [class] token's row
    else:
        rows = rollout[:, num_prefix:].mean(dim=1)  # the mean patch token's row
    return rows[:, num_prefix:].cpu()


def _pool_weights(model: VisionTransformer, images: torch.Tensor, head_fusion: str
                  ) -> torch.Tensor:
    """The attention-pooling query's weights over the final tokens (B, T), heads fused."""
    with evaluating(model), torch.no_grad():
        tokens = model.forward_features(_on_model(model, images))
        _, weights = model.attn_pool.attention(tokens, need_weights=True)
    return _fuse_heads(weights.float(), head_fusion)[:, 0]


def rolled_out(model: VisionTransformer) -> str:
    """What the rollout follows, in words: the token (or pooling) that the head reads."""
    config = model.config
    registers = (f" ({config.reg_tokens} register tokens take part in the rollout, and are "
                 "not shown)" if config.reg_tokens else "")
    if model.attn_pool is not None:
        return ("attention-pooling query (map): its attention over the final tokens, "
                "through the rollout" + registers)
    if config.distilled:
        return "mean of the [class] and distillation tokens, as the two heads are averaged"
    if config.class_token and config.global_pool == "token":
        return "class" + registers
    return "mean of patch tokens" + registers


def patch_distances(grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Euclidean distance in pixels between the centres of every pair of patches, (N, N).

    Patches are in row-major order; neighbouring centres are `patch_size` pixels apart.
    """
    rows, cols = torch.meshgrid(
        torch.arange(grid[0], dtype=torch.float64),
        torch.arange(grid[1], dtype=torch.float64),
        indexing="ij",
    )
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=1) * patch_size
    return torch.cdist(centres, centres).float()


def mean_attention_distance(
    model: VisionTransformer, images: torch.Tensor, batch_size: int = 32
) -> torch.Tensor:
    """The paper's Figure 7 (right): per layer and head, the attention-weighted distance in
    pixels between query and key patch centres, averaged over queries and images: (L, heads).

    As the paper's figure is about image patches, the [class] token is left out as query and
    as key, and each query's attention over patch keys is renormalised to sum to one. With
    uniform attention this is the mean distance over all N^2 ordered patch pairs (self-pairs
    included); with attention only to itself it is zero.
    """
    grid = model.check_input(images)
    num_prefix = model.config.num_prefix_tokens
    distances = patch_distances(grid, model.config.patch_size)
    total = torch.zeros(len(model.blocks), model.config.num_heads, dtype=torch.float64)
    for start in range(0, images.shape[0], batch_size):
        maps = attention_maps(model, images[start : start + batch_size])
        for layer, probs in maps.items():
            patch = probs[:, :, num_prefix:, num_prefix:]
            patch = patch / patch.sum(dim=-1, keepdim=True).clamp_min(1e-12)
            per_query = (patch * distances.to(patch.device)).sum(dim=-1)  # (B, heads, N)
            total[layer] += per_query.mean(dim=-1).sum(dim=0).double().cpu()
    return (total / images.shape[0]).float()
