"""The training dtype by measurement: on a CPU with bf16 matrix units (AVX-512 BF16 or AMX),
bf16 autocast is faster for wide models but slower for narrow ones (measured on an AMD EPYC
with AVX-512 BF16: the digits preset trains 1.8x slower in bf16, ViT-S/16 infers 2.2x
faster), so `--precision auto` times a few steps of this model in both and keeps the faster,
cached per machine, torch version, model and batch. CPUs without bf16 units (AVX2) get fp32
without a probe (their bf16 is emulated); GPUs get bf16 where supported.

`precision='fp8'` trains in bf16 autocast with the encoder's linear layers swapped for
torchao's Float8Linear (`to_float8_training`), for GPUs that multiply float8 matrices."""

from __future__ import annotations

import copy
import logging
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from ..device import (
    TRAINING_PRECISIONS,
    has_float8,
    resolve_dtype,
    unmeasured_dtype,
)
from ..errors import require
from ..infer.float8 import float8_layer
from ..infer.precision import DTYPES
from ..measured import cache_file, choice_key, fastest_dtype
from .objectives import Classification, Objective

log = logging.getLogger("vitkit")


def training_dtype(model: nn.Module, precision: str, device: torch.device, batch: int,
                   cache: Path | None = None, objective: Objective | None = None
                   ) -> torch.dtype:
    """The autocast dtype to train `model` in: fp32 or bf16 when asked, else (precision
    'auto') the device's rule, measured for this model and `objective` (classification by
    default) on CPUs with bf16 units. 'fp8' autocasts to bf16 around its float8 layers."""
    if precision not in TRAINING_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(TRAINING_PRECISIONS)}, not "
                         f"{precision!r}")
    if precision == "fp8":
        return torch.bfloat16
    if precision != "auto":
        return resolve_dtype(device, precision)
    if (settled := unmeasured_dtype(device)) is not None:
        return settled
    objective = objective or Classification()
    images = min(batch, 32)
    choice = fastest_dtype(
        cache or cache_file("precision"),
        choice_key(getattr(model, "config", None), type(objective).__name__, images),
        lambda: {name: statistics.median(seconds) for name, seconds
                 in pass_seconds(model, images, device, DTYPES, objective, 3).items()},
        "precision auto", "a training step of this model")
    return DTYPES[choice]


def step_seconds(model: nn.Module, batch: int, device: torch.device, dtype: torch.dtype,
                 objective: Objective | None = None) -> float:
    """Seconds of one optimizer step of `batch` images: the fastest of two timed forward and
    backward passes of up to 8 random images, scaled to the batch (the plan's estimate)."""
    micro = min(batch, 8)
    seconds = pass_seconds(model, micro, device, {"step": dtype}, objective or Classification(),
                           2)["step"]
    return min(seconds) * batch / micro


def pass_seconds(model: nn.Module, count: int, device: torch.device,
                 dtypes: dict[str, torch.dtype], objective: Objective, rounds: int
                 ) -> dict[str, list[float]]:
    """The times of `rounds` forward and backward passes of `objective` on `count` random
    images in each of `dtypes` (autocast), after one untimed pass each, interleaved so that a
    noisy moment on a shared machine slows every dtype alike. They run on a copy of the
    model, so that its weights, gradients, normalisation statistics and the global RNG are
    left as they were."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    times: dict[str, list[float]] = {name: [] for name in dtypes}
    with torch.random.fork_rng(devices=cuda):  # the run's RNG streams are left untouched
        probe = copy.deepcopy(model).to(device).train()
        config = model.config
        images = torch.randn(count, config.in_chans, *config.img_size, device=device)
        labels = torch.randint(0, max(config.num_classes, 1), (count,), device=device)
        for round_ in range(rounds + 1):  # the first is warm-up
            for name, dtype in dtypes.items():
                start = time.perf_counter()
                with torch.autocast(device.type, torch.bfloat16,
                                    enabled=dtype == torch.bfloat16):
                    loss = objective.loss(probe, images, labels)
                loss.backward()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if round_:
                    times[name].append(time.perf_counter() - start)
    return times


def check_float8_training(precision: str, lora_rank: int, fsdp: bool) -> None:
    """Refuse the combinations with precision='fp8' that vitkit has not tested."""
    if precision != "fp8":
        return
    if lora_rank:
        raise ValueError("precision='fp8' trains full weights; with lora_rank= use "
                         "precision='bf16'")
    if fsdp:
        raise ValueError("precision='fp8' is not tested with fsdp=True; use precision='bf16' "
                         "with fsdp=True")


def to_float8_training(model: nn.Module, device: torch.device) -> int:
    """Swap the encoder's linear layers (`vitkit.infer.float8.float8_layer`) for torchao's
    Float8Linear, in place: their products run in float8, forward and backward, with dynamic
    per-tensor scales, while the weights stay in full precision under the same names (a
    checkpoint loads into a plain model). Returns how many layers were swapped. Off a GPU of
    compute capability 8.9+, float8 is emulated: right, but slower than bf16."""
    float8 = require("torchao.float8", "fp8", "float8 training")
    linear = require("torchao.float8.float8_linear", "fp8", "float8 training").Float8Linear
    if not has_float8(device):
        log.warning("precision fp8: %s has no float8 matrix units, so float8 is emulated "
                    "(slower than bf16; for checking a run before it goes to a GPU)", device)
    float8.convert_to_float8_training(model, module_filter_fn=float8_layer)
    swapped = sum(isinstance(m, linear) for m in model.modules())
    log.info("precision fp8: %d linear layers compute in float8, the rest in bf16", swapped)
    return swapped
