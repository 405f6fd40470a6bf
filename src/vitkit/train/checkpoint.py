"""The training state on disk: written atomically (temp file + rename), read with
`weights_only=True`, and holding everything an exact resume needs."""

from __future__ import annotations

import errno
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import TrainingError
from ..files import atomic_write

STATE_NAME = "last.pt"
# Recipe fields that shape the saved state (the adapters, the optimizer's groups): a run
# resumes only with the values it started with.
STRUCTURE_FIELDS = ("lora_rank", "layer_decay")


def rng_state() -> dict[str, Any]:
    """torch, numpy and python RNG states as tensors, lists and ints (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": int(version), "internal": list(internal)},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), None))


def save_state(state: dict[str, Any], directory: Path) -> Path:
    """Write the training state to directory/last.pt atomically.

    A failure (a full disk, a kill) leaves the previous file untouched; a full disk is
    reported as a TrainingError that says so.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_NAME
    try:
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    except OSError as error:
        if error.errno == errno.ENOSPC:
            kept = f"the previous checkpoint {path} is intact" if path.exists() else (
                "no earlier checkpoint existed")
            raise TrainingError(
                f"disk full while saving the checkpoint at step {state.get('step')}; {kept}. "
                "Free some space and rerun with resume=True."
            ) from error
        raise
    return path


def load_state(directory: Path) -> dict[str, Any]:
    """Read directory/last.pt with weights_only=True (no code in it can run)."""
    path = directory / STATE_NAME
    if not path.exists():
        raise FileNotFoundError(
            f"nothing to resume: no training state at {path}; start without resume=True"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file: say which and what to do
        raise TrainingError(f"can't read the training state {path}: {error}") from error


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete temp files a killed save left behind (never the real checkpoints)."""
    removed = []
    if directory.is_dir():
        for tmp in directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def check_same_structure(saved_recipe: dict[str, Any], recipe: Any) -> None:
    """Refuse to resume with a LoRA rank or layer decay other than the run's, naming the
    argument and the value to give."""
    for key in STRUCTURE_FIELDS:
        if key in saved_recipe and saved_recipe[key] != getattr(recipe, key):
            raise ValueError(f"this run was trained with {key}={saved_recipe[key]!r}; resume "
                             f"it with {key}={saved_recipe[key]!r}, not {getattr(recipe, key)!r}")
