"""Building blocks shared by the model and the weight loaders: drop-path and
position-embedding resampling (paper Section 3.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., 2016): drop a residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def zero_head(in_features: int, num_classes: int, device: torch.device | None = None,
              dtype: torch.dtype | None = None) -> nn.Module:
    """A zero-initialised linear classifier (paper Section 3.2: fine-tuning starts from a
    zero head), or Identity for num_classes 0 (a headless feature extractor)."""
    if not num_classes:
        return nn.Identity()
    head = nn.Linear(in_features, num_classes, device=device, dtype=dtype)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Resample learned position embeddings to a new patch grid by 2D bicubic interpolation.

    pos_embed is (1, prefix + gh*gw, D); the prefix ([class] token) entries are kept as they
    are, the grid part is interpolated as an image (paper Section 3.2, "Fine-tuning and higher
    resolution"). With old_grid None the old grid is taken to be square.
    """
    num_grid = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = int(round(num_grid**0.5))
        if side * side != num_grid:
            raise ValueError(
                f"cannot infer the grid of {num_grid} position embeddings; pass old_grid"
            )
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != num_grid:
        raise ValueError(f"grid {old_grid} does not hold {num_grid} position embeddings")
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = grid.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)  # (1, D, gh, gw)
    grid = F.interpolate(
        grid.float(), size=tuple(new_grid), mode="bicubic", align_corners=False, antialias=True
    )
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)
    return torch.cat([prefix, grid.to(pos_embed.dtype)], dim=1)
