"""Choices made by measurement, remembered per machine: `--precision auto` for training and
`--backend auto` for inference time the candidates once, then read the answer back.

Each kind of choice is one JSON file under $VITKIT_CACHE (default ~/.cache/vitkit). A key
names everything the answer depends on: the CPU (its model name and the flags that change
which kernels run), the torch version, the thread count and what the caller adds (the model,
the batch, the dtype), so another model or another CPU is measured afresh."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cpu import cpu_facts, isa_caps, kernel_flags
from .files import write_json

log = logging.getLogger("vitkit")


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


def fastest_dtype(path: Path, key: str, seconds: Callable[[], dict[str, float]], what: str,
                  timed: str, note: dict[str, Any] | None = None) -> str:
    """'fp32' or 'bf16', whichever `seconds()` (each name -> seconds of the same work in it)
    finds faster: read back from `path` when `key` was measured before, else timed once,
    logged as `what` (the work described as `timed`) and kept with its figures and `note`."""
    known = read_choices(path).get(key)
    if known and known.get("dtype") in ("fp32", "bf16"):
        return known["dtype"]
    times = seconds()
    choice = min(times, key=times.get)
    figures = ", ".join(f"{value:.3f} s in {name}" for name, value in times.items())
    log.info("%s: %s (%s took %s on this CPU; cached in %s)", what, choice, timed, figures,
             path)
    remember(path, key, {"dtype": choice, **(note or {}),
                         **{f"{name}_s": round(value, 5) for name, value in times.items()}})
    return choice


def side_by_side(calls: dict[str, Callable[[], object]], rounds: int, at_most: int = 0,
                 seconds: float = 0.0, settle: int = 0) -> dict[str, float]:
    """The median seconds of each of `calls`, timed in interleaved rounds so that a noisy
    moment on a shared machine slows them alike: each round runs every call `settle` times
    untimed, then once timed; `rounds` rounds, and more until `seconds` have passed (at
    most `at_most` in all)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    begin, done = time.perf_counter(), 0
    while done < rounds or (done < at_most and time.perf_counter() - begin < seconds):
        for name, call in calls.items():
            for _ in range(settle):
                call()
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
        done += 1
    return {name: statistics.median(values) for name, values in times.items()}
