"""Reading and writing weights: vitkit's own format, timm, Hugging Face and Google's .npz."""

from ..errors import CheckpointError
from .export import FORMATS, export, export_hf, export_npz, export_timm
from .io import load_pretrained, load_state_dict_checked, run_checkpoint, save_pretrained
from .load import Checkpoint, create_pretrained, read_checkpoint

__all__ = [
    "FORMATS",
    "Checkpoint",
    "CheckpointError",
    "create_pretrained",
    "export",
    "export_hf",
    "export_npz",
    "export_timm",
    "load_pretrained",
    "load_state_dict_checked",
    "read_checkpoint",
    "run_checkpoint",
    "save_pretrained",
]
