"""Images held as one uint8 tensor: decoded once, augmented on batches, cheap to index."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset


@dataclass
class ImageTensorDataset(Dataset):
    """A labelled image set in memory: images uint8 (N, C, H, W), targets int64 (N,).

    `skipped` lists (path, reason) for files that could not be decoded and were left out.
    """

    images: torch.Tensor
    targets: torch.Tensor
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if len(self.images) != len(self.targets):
            raise ValueError(f"{len(self.images)} images but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: torch.Tensor) -> ImageTensorDataset:
        """The images at `indices`, sharing class names and the list of skipped files."""
        return ImageTensorDataset(
            self.images[indices], self.targets[indices], self.classes, list(self.skipped)
        )


def spread_evenly(count: int, limit: int) -> list[int]:
    """At most `limit` indices of `count` items, spread evenly from the first (all of them
    when `limit` <= 0 or there are no more than `limit`): a calibration set that samples the
    whole list, not its first folder."""
    if limit <= 0 or count <= limit:
        return list(range(count))
    return [i * count // limit for i in range(limit)]
