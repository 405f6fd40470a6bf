"""Datasets that need no download: scikit-learn's 8x8 handwritten digits."""

from __future__ import annotations

import numpy as np
import torch

from .dataset import ImageTensorDataset

DIGITS_SEED = 0  # the fixed seed of the digits train/test split


def load_digits(
    split: str, seed: int = DIGITS_SEED, test_fraction: float = 0.2
) -> ImageTensorDataset:
    """scikit-learn's 1,797 8x8 digits as 1-channel uint8 images, in a fixed stratified split.

    Pixel values 0..16 are scaled to 0..255. `split` is 'train' (80%) or 'test' (20%).
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test"):
        raise ValueError(f"digits has splits 'train' and 'test', not {split!r}")
    bunch = sklearn_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    indices = np.arange(len(images))
    train_idx, test_idx = train_test_split(
        indices, test_size=test_fraction, stratify=bunch.target, random_state=seed
    )
    chosen = np.sort(train_idx if split == "train" else test_idx)
    return ImageTensorDataset(
        images=torch.from_numpy(images[chosen]).unsqueeze(1),
        targets=torch.from_numpy(bunch.target[chosen]).long(),
        classes=[str(digit) for digit in range(10)],
    )
