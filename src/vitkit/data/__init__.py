"""Data: image sources decoded into uint8 tensor datasets, and the one path from pixels to
model input."""

from .builtin import load_digits
from .dataset import ImageTensorDataset, spread_evenly
from .decode import load_image
from .folders import find_images
from .images import ImageDecodeError, decode_image
from .sources import BUILTIN_SOURCES, DataSplits, load_splits, load_unlabelled, source_classes
from .transforms import model_input, normalize, resize_batch, resize_crop

__all__ = [
    "spread_evenly",
    "BUILTIN_SOURCES",
    "DataSplits",
    "ImageDecodeError",
    "ImageTensorDataset",
    "decode_image",
    "find_images",
    "load_digits",
    "load_image",
    "load_splits",
    "load_unlabelled",
    "model_input",
    "normalize",
    "resize_batch",
    "resize_crop",
    "source_classes",
]
