"""Data: image sources decoded into uint8 tensor datasets."""

from .builtin import load_digits
from .dataset import ImageTensorDataset
from .images import ImageDecodeError, decode_image
from .sources import BUILTIN_SOURCES, DataSplits, load_splits
from .transforms import normalize, resize_batch

__all__ = [
    "BUILTIN_SOURCES",
    "DataSplits",
    "ImageDecodeError",
    "ImageTensorDataset",
    "decode_image",
    "load_digits",
    "load_splits",
    "normalize",
    "resize_batch",
]
