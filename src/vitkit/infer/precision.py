"""The inference dtype by measurement. bf16 units on a CPU (AVX-512 BF16, AMX) do not make
every model faster in bf16 on every CPU: measured at batch 32, ViT-S/16 ran 2.2x faster in bf16
than in fp32 on an AMD EPYC with AVX-512 BF16, and 0.68x as fast (10.9 against 16.0 images/s)
on an Intel Xeon with AVX-512 BF16 and no AMX. So where bf16 could pay, the model's forward
pass is timed once in both dtypes and the faster kept, cached per machine, torch version,
model and batch, as `--precision auto` does for training. CPUs without bf16 units get fp32
without a probe (their bf16 is emulated); GPUs get bf16 where supported."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from ..device import unmeasured_dtype
from ..measured import cache_file, choice_key, fastest_dtype, side_by_side
from ..models import VisionTransformer
from .batches import inference_module

# The forward pass is timed on up to this many images (per image within noise of larger CPU
# batches, and a ViT-B/16 probe stays near 10 s), in this many interleaved rounds.
PROBE_IMAGES, PROBE_ROUNDS = 8, 3
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def inference_dtype(model: VisionTransformer, device: torch.device | str, batch: int,
                    fp32: bool = False, cache: Path | None = None) -> torch.dtype:
    """The dtype to run `model` in at `batch` images a call on `device`: fp32 when `fp32`
    is set or the CPU has no bf16 units, bf16 on a GPU that supports it, and on a CPU with
    bf16 units the faster of the two for this model, measured the first time (logged, and
    kept in $VITKIT_CACHE/precision.json)."""
    device = torch.device(device)
    if fp32:
        return torch.float32
    if (settled := unmeasured_dtype(device)) is not None:
        return settled
    images = max(1, min(batch, PROBE_IMAGES))
    choice = fastest_dtype(cache or cache_file("precision"),
                           choice_key("inference", model.config, images),
                           lambda: forward_seconds(model, images, device),
                           "inference precision", f"a forward pass of {images} images",
                           note={"for": "inference"})
    return DTYPES[choice]


def forward_seconds(model: VisionTransformer, images: int, device: torch.device
                    ) -> dict[str, float]:
    """Median seconds of one no-grad forward pass of `images` random inputs through the
    module vitkit's commands run (`inference_module`) in fp32 and in bf16: one warm-up call
    each, then `PROBE_ROUNDS` rounds timing each once, interleaved so that a noisy moment
    slows both alike. `model` itself is left as it was."""
    config = model.config
    inputs = torch.randn(images, config.in_chans, *config.img_size, device=device,
                         generator=torch.Generator(device).manual_seed(0))
    training = model.training
    runners = {name: inference_module(model.eval(), dtype, device)
               for name, dtype in DTYPES.items()}
    try:
        with torch.no_grad():
            for runner in runners.values():
                runner(inputs)
            return side_by_side({name: functools.partial(runner, inputs)
                                 for name, runner in runners.items()}, PROBE_ROUNDS)
    finally:
        model.train(training)
