"""torchvision's CIFAR-10/100, MNIST and Fashion-MNIST as uint8 tensor datasets: read from
`data_dir`, or downloaded into vitkit's cache when the machine is online."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageTensorDataset

# name -> (torchvision class name, host its files are fetched from, folder it expects)
TORCHVISION_SETS = {
    "cifar10": ("CIFAR10", "www.cs.toronto.edu", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "www.cs.toronto.edu", "cifar-100-python"),
    "mnist": ("MNIST", "ossci-datasets.s3.amazonaws.com", "MNIST/raw"),
    "fashion-mnist": ("FashionMNIST", "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
                      "FashionMNIST/raw"),
}


def is_online(host: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to `host`:443 opens within `timeout` seconds."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _to_dataset(raw: object) -> ImageTensorDataset:
    data = raw.data  # type: ignore[attr-defined]
    images = torch.as_tensor(np.asarray(data), dtype=torch.uint8)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    targets = torch.as_tensor(np.asarray(raw.targets), dtype=torch.int64)  # type: ignore[attr-defined]
    return ImageTensorDataset(images.contiguous(), targets, list(raw.classes))  # type: ignore[attr-defined]


def load_torchvision(name: str, split: str, data_dir: str | os.PathLike | None,
                     cache_root: Path) -> ImageTensorDataset:
    """The 'train' or 'test' split of a torchvision data set.

    With `data_dir`, the files must already be there. Without it, vitkit's cache folder is
    used and the files are downloaded into it if missing and the machine is online.
    """
    import torchvision.datasets as tvd

    class_name, host, expected = TORCHVISION_SETS[name]
    cls = getattr(tvd, class_name)
    train = split == "train"
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"data_dir='{root}' is not a folder")
        try:
            return _to_dataset(cls(str(root), train=train, download=False))
        except RuntimeError as error:
            raise FileNotFoundError(
                f"{name} was not found in {root} ({error}); it should hold {expected}/ as "
                f"torchvision downloads it"
            ) from error
    root = cache_root / "torchvision"
    try:
        return _to_dataset(cls(str(root), train=train, download=False))
    except RuntimeError:
        pass
    if not is_online(host):
        raise FileNotFoundError(
            f"{name} is not in {root} and this machine can't reach {host} to download it; "
            f"pass data_dir='FOLDER' holding {expected}/ (as torchvision downloads it)"
        )
    try:
        return _to_dataset(cls(str(root), train=train, download=True))
    except (OSError, RuntimeError) as error:
        raise FileNotFoundError(
            f"downloading {name} into {root} failed ({error}); pass data_dir='FOLDER' holding "
            f"{expected}/"
        ) from error
