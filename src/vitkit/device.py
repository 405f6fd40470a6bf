"""Which device and number format to compute in: bf16 only where the hardware multiplies
bf16 matrices natively (AMX on Intel CPUs, tensor cores on GPUs), fp32 everywhere else."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .cpu import kernels_may_use, omp_threads_sleep

if TYPE_CHECKING:  # torch is imported where it is used, so the CLI starts fast
    import torch

# Elements per thread below which an inductor CPU kernel runs on one thread while OpenMP's
# threads sleep between regions (inductor's own default splits from 512). Measured at 2
# threads on an AVX-512 BF16 EPYC: int8 ViT-S/16 at batch 1 32.3 -> 38.2 images/s, bf16
# compiled 26.4 -> 29.0, the digits ViT's compiled training step 2580 -> 2840; batch 32 and
# the CIFAR ViT's training step unchanged. With spinning threads it cost int8 9% instead.
SLEEPING_THREADS_CHUNK = 65536


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.cache
def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU has AMX tiles, or at least AVX-512 BF16, for bf16 matrix products,
    and oneDNN may use them (ONEDNN_MAX_CPU_ISA can cap it below; see `vitkit.cpu`).

    Without them (e.g. AVX2-only CPUs) PyTorch emulates bf16 matmuls, which is far slower
    than fp32, so bf16 must not be the default there.
    """
    import torch

    checks = (("_is_amx_tile_supported", "amx_bf16"), ("_is_avx512_bf16_supported", "avx512_bf16"))
    return any(getattr(torch.cpu, name, lambda: False)() and kernels_may_use(flag)
               for name, flag in checks)


def has_fast_bf16(device: torch.device | str) -> bool:
    """Whether bf16 matrix products are native (and so faster than fp32) on `device`."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_bf16_matrix_units()
    return False


# The compute capability from which NVIDIA GPUs multiply float8 matrices natively (Ada
# Lovelace 8.9, Hopper 9.0, Blackwell 10.0 and newer).
FLOAT8_CAPABILITY = (8, 9)


def has_float8(device: torch.device | str) -> bool:
    """Whether `device` multiplies float8 matrices natively: a CUDA GPU of compute capability
    8.9 or newer. Elsewhere torchao's float8 is emulated (slower than bf16) or refused."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device) >= FLOAT8_CAPABILITY


def default_dtype(device: torch.device | str, fp32: bool = False) -> torch.dtype:
    """The compute dtype vitkit's commands use by default: bf16 where native, else fp32."""
    import torch

    if fp32:
        return torch.float32
    return torch.bfloat16 if has_fast_bf16(device) else torch.float32


def unmeasured_dtype(device: torch.device | str) -> torch.dtype | None:
    """The compute dtype where no measurement can change it: the device's default off the
    CPU (bf16 where native), fp32 on a CPU without bf16 units (its bf16 is emulated, far
    slower). None on a CPU with bf16 units, where the faster dtype depends on the model and
    is measured (`vitkit.infer.precision`, `vitkit.train.precision`)."""
    import torch

    device = torch.device(device)
    if device.type != "cpu":
        return default_dtype(device)
    return None if cpu_has_bf16_matrix_units() else torch.float32


def evaluation_dtype(device: torch.device | str) -> torch.dtype:
    """The dtype every reported accuracy is computed in (`vitkit eval`, a run's validation
    and its final test): fp32 on the CPU, so the number is the same whichever CPU computes
    it; bf16 on a GPU that is native at it."""
    import torch

    device = torch.device(device)
    return default_dtype(device) if device.type == "cuda" else torch.float32


PRECISIONS = ("auto", "fp32", "bf16")
# Training may also put its linear layers in float8 (bf16 autocast for the rest; see
# `vitkit.train.precision.to_float8_training`).
TRAINING_PRECISIONS = (*PRECISIONS, "fp8")


def resolve_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype:
    """The compute dtype for a --precision choice: 'fp32', 'bf16', or 'auto' (`default_dtype`)."""
    import torch

    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        return default_dtype(device)
    raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's CPU threads set to `count` for the block, then restored (None: left alone)."""
    import torch

    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def quiet_cuda_home_notice() -> None:
    """Drop torch's "No CUDA runtime is found, using CUDA_HOME=..." warning. inductor prints it
    on a machine with a CUDA toolkit but no GPU, when it first compiles C++ for the CPU. It
    concerns building CUDA extensions, not a CPU run, and it landed in the middle of
    `vitkit predict`'s table. The logger's other messages still show."""
    notice = "No CUDA runtime is found"
    logging.getLogger("torch.utils.cpp_extension").addFilter(
        lambda record: not record.getMessage().startswith(notice))


def compile_options(device: torch.device | str,
                    cuda_graphs: bool = False) -> dict[str, int | bool] | None:
    """inductor options for `torch.compile` on `device`: on the CPU, with OpenMP threads that
    sleep between parallel regions, a kernel too small to repay waking them runs on one
    thread. The waking is shared among the helper threads, so the threshold shrinks as they
    grow (measured at 2 threads only). cuda_graphs: on CUDA, the compiled kernels are
    recorded once per input shape as a CUDA graph and replayed (ignored elsewhere). Every
    vitkit compile asks here, so this is also where torch's CUDA_HOME notice is silenced
    (`quiet_cuda_home_notice`)."""
    import torch

    quiet_cuda_home_notice()
    kind = torch.device(device).type
    if kind == "cuda" and cuda_graphs:
        return {"triton.cudagraphs": True}
    threads = torch.get_num_threads()
    if kind != "cpu" or threads < 2 or not omp_threads_sleep():
        return None
    return {"cpp.min_chunk_size": max(512, SLEEPING_THREADS_CHUNK // (threads - 1))}
