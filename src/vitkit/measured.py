"""Choices made by measurement, remembered per machine: `--precision auto` for training and
`--backend auto` for inference time the candidates once, then read the answer back.

Each kind of choice is one JSON file under $VITKIT_CACHE (default ~/.cache/vitkit). A key
names everything the answer depends on: the CPU (its model name and the flags that change
which kernels run), the torch version, the thread count and what the caller adds (the model,
the batch, the dtype), so another model or another CPU is measured afresh."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .cpu import cpu_facts, isa_caps, kernel_flags
from .files import write_json


def cpu_identity() -> str:
    """The CPU's model name, the kernel-deciding flags its kernels may use and any cap on
    its instruction set, as one line."""
    name, _ = cpu_facts()
    return "|".join([name, " ".join(kernel_flags()), *isa_caps()])


def choice_key(*parts: object) -> str:
    """A short digest of this machine (CPU, torch, threads) and `parts`."""
    import torch

    text = "|".join([cpu_identity(), torch.__version__, str(torch.get_num_threads()),
                     *map(str, parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_file(kind: str) -> Path:
    """The JSON file holding the measured choices of `kind` ('precision', 'backend')."""
    root = os.environ.get("VITKIT_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "vitkit"
    return base / f"{kind}.json"


def read_choices(path: Path) -> dict[str, Any]:
    """The choices saved in `path` ({} when there is no file or it is unreadable)."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def remember(path: Path, key: str, value: dict[str, Any]) -> None:
    """Add one choice to `path`; a cache that cannot be written is only not kept."""
    known = read_choices(path)
    known[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, known)
    except OSError:
        pass
