"""Shared bits of the training tests: a tiny ViT and a small digits subset."""

from __future__ import annotations

import torch

import vitkit
from vitkit.data import ImageTensorDataset, load_digits

TINY = dict(embed_dim=32, depth=2, num_heads=2, mlp_dim=64)


def tiny_model(seed: int = 0, **overrides) -> vitkit.VisionTransformer:
    torch.manual_seed(seed)
    return vitkit.create_model("vit_digits_patch2_8", **{**TINY, **overrides})


def digits_subset(count: int = 96, split: str = "train") -> ImageTensorDataset:
    data = load_digits(split)
    return data.subset(torch.arange(count))
