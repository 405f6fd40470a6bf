"""Reading and writing weights: vitkit's own format, and checkpoints from other libraries."""

from .io import CheckpointError, load_pretrained, load_state_dict_checked, save_pretrained
from .load import Checkpoint, create_pretrained, read_checkpoint

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "create_pretrained",
    "load_pretrained",
    "load_state_dict_checked",
    "read_checkpoint",
    "save_pretrained",
]
