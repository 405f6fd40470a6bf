"""vitkit: Vision Transformers (Dosovitskiy et al., ICLR 2021) on PyTorch.

The public names are imported on first use (PEP 562), so `import vitkit` and the command
line's `--version`, `--help` and `models` start without importing torch.
"""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING

from .cpu import omp_wait_settings
from .lazy import lazy_attributes

# How idle OpenMP threads wait, set before torch is first imported (users' own OMP_WAIT_POLICY
# or GOMP_SPINCOUNT win): long spins make a busy small CPU up to 10x slower (measured: a
# digits ViT step 0.15 s -> 1.2 s at 2 threads under load), so threads sleep at once, except
# on Intel CPUs, where a short spin measured faster both quiet and loaded (`vitkit.cpu`).
_os.environ.update(omp_wait_settings(_os.environ))

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .factory import create_model
    from .infer.classifier import Classifier
    from .infer.optimize import optimize_for_inference
    from .models import VisionTransformer, ViTConfig, list_models
    from .train.plan import PlannedRun, plan_training
    from .weights import load_pretrained, save_pretrained

_LAZY = {
    "Classifier": "infer.classifier",
    "create_model": "factory",
    "optimize_for_inference": "infer.optimize",
    "PlannedRun": "train.plan",
    "plan_training": "train.plan",
    "VisionTransformer": "models",
    "ViTConfig": "models",
    "list_models": "models",
    "load_pretrained": "weights",
    "save_pretrained": "weights",
}

__all__ = [
    "Classifier",
    "PlannedRun",
    "ViTConfig",
    "VisionTransformer",
    "create_model",
    "list_models",
    "load_pretrained",
    "optimize_for_inference",
    "plan_training",
    "save_pretrained",
]

__getattr__ = lazy_attributes(__name__, _LAZY, globals())
