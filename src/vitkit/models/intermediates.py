"""The token maps z_l of chosen blocks (Eqs. 2-3), as DINOv2 and CLIP users take them for
dense prediction: timm's `forward_intermediates` (same name, arguments and outputs) and
DINOv2's `get_intermediate_layers`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def take_indices(depth: int, indices: int | Sequence[int] | None) -> list[int]:
    """Block indices to return: every block for None, the last n for an int n, else the
    given ones (negative ones count from the end)."""
    if indices is None:
        return list(range(depth))
    if isinstance(indices, int):
        if not 0 < indices <= depth:
            raise ValueError(f"asked for the last {indices} blocks of {depth}")
        return list(range(depth - indices, depth))
    taken = []
    for index in indices:
        if not -depth <= index < depth:
            raise ValueError(f"block index {index} is out of range for {depth} blocks")
        taken.append(index % depth)
    return taken


def run_blocks(model: Any, images: torch.Tensor, indices: list[int], stop_early: bool
               ) -> tuple[torch.Tensor, list[torch.Tensor], tuple[int, int]]:
    """z_L (or the last block asked for with stop_early), the z_l of `indices`, and the grid."""
    grid = model.check_input(images)
    z = model.add_class_and_position(model.patch_embed(images), grid)
    last = max(indices) if stop_early and indices else len(model.blocks) - 1
    taken: list[torch.Tensor] = []
    for index, block in enumerate(model.blocks):
        if index > last:
            break
        z, _ = model._run_block(block, z)
        if index in indices:
            taken.append(z)
    return z, taken, grid


def forward_intermediates(
    model: Any, images: torch.Tensor, indices: int | Sequence[int] | None = None,
    return_prefix_tokens: bool = False, norm: bool = False, stop_early: bool = False,
    output_fmt: str = "NCHW", intermediates_only: bool = False,
) -> Any:
    """timm's `forward_intermediates`: the patch tokens of blocks `indices` as (B, D, h, w)
    maps ('NCHW') or (B, N, D) ('NLC'), after the final norm if `norm`, each paired with its
    prefix tokens (B, prefix, D) if `return_prefix_tokens`; with (LN(z_L), that list) unless
    `intermediates_only`."""
    if output_fmt not in ("NCHW", "NLC"):
        raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
    wanted = take_indices(len(model.blocks), indices)
    z, taken, (gh, gw) = run_blocks(model, images, wanted, stop_early)
    prefix = model.config.num_prefix_tokens
    taken = [model.norm(t) if norm else t for t in taken]
    prefixes = [t[:, :prefix] for t in taken]
    patches = [t[:, prefix:] for t in taken]
    if output_fmt == "NCHW":
        patches = [p.reshape(p.shape[0], gh, gw, -1).permute(0, 3, 1, 2).contiguous()
                   for p in patches]
    out: list[Any] = patches
    if return_prefix_tokens and prefix:
        out = list(zip(patches, prefixes, strict=True))
    if intermediates_only:
        return out
    return model.norm(z), out


def get_intermediate_layers(
    model: Any, images: torch.Tensor, n: int | Sequence[int] = 1, reshape: bool = False,
    return_class_token: bool = False, norm: bool = True,
) -> tuple[Any, ...]:
    """DINOv2's `get_intermediate_layers`: the patch tokens of the last n blocks (or blocks
    n), final-normed by default, as (B, N, D) or (B, D, h, w) with `reshape`, each paired with
    its [class] token (B, D) if `return_class_token`."""
    maps = forward_intermediates(model, images, n, return_prefix_tokens=True, norm=norm,
                                 stop_early=True, output_fmt="NCHW" if reshape else "NLC",
                                 intermediates_only=True)
    if not model.config.num_prefix_tokens:  # no [class] token (SigLIP): nothing to pair
        if return_class_token:
            raise ValueError("this model has no [class] token to return")
        return tuple(maps)
    if return_class_token:
        return tuple((patches, prefix[:, 0]) for patches, prefix in maps)
    return tuple(patches for patches, _ in maps)
