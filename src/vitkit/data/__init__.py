"""Data: image sources decoded into uint8 tensor datasets."""

from .builtin import load_digits
from .dataset import ImageTensorDataset

__all__ = ["ImageTensorDataset", "load_digits"]
