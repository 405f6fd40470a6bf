"""The training dtype by measurement: on a CPU with bf16 matrix units (AVX-512 BF16 or AMX),
bf16 autocast is faster for wide models but slower for narrow ones (measured on an AMD EPYC
with AVX-512 BF16: the digits preset trains 1.8x slower in bf16, ViT-S/16 infers 2.2x
faster), so `--precision auto` times a few steps of this model in both and keeps the faster,
cached per machine, torch version, model and batch. CPUs without bf16 units (AVX2) get fp32
without a probe (their bf16 is emulated); GPUs get bf16 where supported."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..device import cpu_has_bf16_matrix_units, default_dtype, resolve_dtype
from ..files import write_json

log = logging.getLogger("vitkit")


def training_dtype(model: nn.Module, precision: str, device: torch.device, batch: int,
                   cache: Path | None = None) -> torch.dtype:
    """The autocast dtype to train `model` in: fp32 or bf16 when asked, else (precision
    'auto') the device's rule, measured for this model on CPUs with bf16 units."""
    if precision != "auto":
        return resolve_dtype(device, precision)
    if device.type != "cpu":
        return default_dtype(device)
    if not cpu_has_bf16_matrix_units():
        return torch.float32  # bf16 would be emulated
    config = getattr(model, "config", None)
    key = _key(repr(config), batch)
    path = cache or _cache_path()
    known = _read(path)
    if key in known:
        return torch.bfloat16 if known[key]["dtype"] == "bf16" else torch.float32
    times = {name: _step_seconds(model, batch, dtype)
             for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    choice = min(times, key=times.get)
    log.info("precision auto: %s (a training step of this model took %.3f s in fp32, %.3f s "
             "in bf16 on this CPU; cached in %s)", choice, times["fp32"], times["bf16"], path)
    known[key] = {"dtype": choice, **{f"{k}_s": round(v, 5) for k, v in times.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, known)
    except OSError:
        pass
    return torch.bfloat16 if choice == "bf16" else torch.float32


def _step_seconds(model: nn.Module, batch: int, dtype: torch.dtype, steps: int = 3) -> float:
    """The median time of a forward and backward pass on a random batch (of at most 32
    images), on a copy of the model so its weights and gradients are left alone."""
    probe = copy.deepcopy(model).train()
    config = model.config
    images = torch.randn(min(batch, 32), config.in_chans, *config.img_size)
    targets = torch.randint(0, max(config.num_classes, 1), (images.shape[0],))
    times = []
    for _ in range(steps + 1):  # the first is warm-up
        start = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.bfloat16):
            logits = probe(images)
        F.cross_entropy(logits.float(), targets).backward()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def _key(config: str, batch: int) -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle
                        if line.startswith("model name")), "")
    except OSError:
        pass
    text = f"{cpu}|{torch.__version__}|{torch.get_num_threads()}|{config}|{min(batch, 32)}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cache_path() -> Path:
    root = os.environ.get("VITKIT_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "vitkit"
    return base / "precision.json"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
