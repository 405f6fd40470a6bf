"""Choices made by measurement, remembered per machine: `--precision auto` for training and
`--backend auto` for inference time the candidates once, then read the answer back.

Each kind of choice is one JSON file under $VITKIT_CACHE (default ~/.cache/vitkit). A key
names everything the answer depends on: the CPU (its model name and the flags that change
which kernels run), the torch version, the thread count and what the caller adds (the model,
the batch, the dtype), so another model or another CPU is measured afresh."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .files import write_json

# The /proc/cpuinfo flags that decide which matrix kernels oneDNN and inductor pick.
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@functools.cache
def cpu_facts() -> tuple[str, frozenset[str]]:
    """The CPU's model name and its /proc/cpuinfo flags ('' and none where there is no such
    file)."""
    name, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = frozenset(value.split())
                    break
    except OSError:
        pass
    return name, flags


def cpu_identity() -> str:
    """The CPU's model name and its kernel-deciding flags, as one line."""
    name, flags = cpu_facts()
    return f"{name}|{' '.join(f for f in KERNEL_FLAGS if f in flags)}"


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
