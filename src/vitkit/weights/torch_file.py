"""Safe reading of PyTorch checkpoints (.pth/.pt/.bin): tensors only, never arbitrary code."""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

from ..errors import CheckpointError, first_line, not_enough_memory

# Keys under which training scripts commonly nest the model's state dict.
WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "model_state", "module", "ema")
# Prefixes added by DistributedDataParallel and torch.compile.
STRIPPED_PREFIXES = ("module.", "_orig_mod.")


def read_torch_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in a torch.save file, loaded with weights_only=True.

    A pickle holding anything but tensors and plain containers is refused before it can run;
    a truncated or damaged file is a CheckpointError too, whatever the reader trips over.
    """
    try:
        # A handle, not the name: torch.load reads a file named *.safetensors as safetensors
        # whatever its bytes hold, and the format here comes from the bytes.
        with open(path, "rb") as handle:
            obj = torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(error)
        if UNSAFE.search(reason):
            raise CheckpointError(
                f"refused to load {path}: it contains Python objects other than tensors, and "
                "unpickling them could run arbitrary code. If you trust its origin, load it "
                "yourself and save the state dict again with safetensors or "
                "torch.save(model.state_dict())"
            ) from error
        raise CheckpointError(_damaged(path, f"a damaged pickle: {reason}")) from error
    except MemoryError as error:
        raise CheckpointError(not_enough_memory(path)) from error
    except Exception as error:  # noqa: BLE001 - damaged bytes make torch's readers raise anything
        raise CheckpointError(_damaged(path, f"{type(error).__name__}: {first_line(error)}")
                              ) from error
    return unwrap_state_dict(obj, str(path))


# What torch's weights-only unpickler says when it meets objects other than tensors, as opposed
# to bytes that are no valid pickle at all ("Unsupported operand", "String is too long", ...).
UNSAFE = re.compile(r"GLOBAL|Can only create new object|Can only build|must be imported")


def _unpickler_reason(error: pickle.UnpicklingError) -> str:
    """The unpickler's own words from torch's long weights_only message."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        tail = text.split("WeightsUnpickler error:", 1)[1]
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        if lines:
            return lines[0]
    return first_line(error)


def _damaged(path: str | os.PathLike, reason: str) -> str:
    return (f"{path} is not a readable PyTorch checkpoint ({reason}); it may be truncated or "
            "corrupted: download or save it again")


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensors in a loaded checkpoint: plain, or nested under 'model'/'state_dict'."""
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict) and _is_state_dict(obj[key]):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not _is_state_dict(obj):
        found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{source} holds no state dict of tensors (found {found}); save the model with "
            "torch.save(model.state_dict(), path)"
        )
    state_dict = {}
    for key, value in obj.items():
        for prefix in STRIPPED_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state_dict[key] = value
    return state_dict


def _is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )
