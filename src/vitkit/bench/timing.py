"""Timing tools: a steady-state timer, a memory sampler and the matmul peak."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import statistics
import threading
import time
from collections.abc import Callable

import torch

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so wall time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, min_time: float = 2.0,
              min_iters: int = 3, best: bool = False) -> float:
    """Median seconds per call of fn (the fastest call with `best`), after one warm-up
    call, over >= min_iters calls and >= min_time seconds."""
    fn()
    synchronize(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times) if best else statistics.median(times)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    """glibc's mallinfo2 (glibc >= 2.33), or None where there is no such function."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return function


_MALLINFO2 = _mallinfo2()


def _resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def _allocated_bytes() -> int:
    """Bytes the process has allocated and not freed (glibc's count of heap and mmap blocks
    in use), else the resident set. Unlike the resident set, memory freed earlier and kept
    by the allocator for reuse does not count, so workloads measured one after another are
    measured alike."""
    if _MALLINFO2 is None:
        return _resident_bytes()
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


class PeakMemory:
    """Peak memory while a block runs: CUDA allocator peak, or on CPU the sampled allocated
    bytes (every 5 ms) as the increase over those at the start."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._base = _allocated_bytes()
        self._max = self._base
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, _allocated_bytes())
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
            return
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self._max, _allocated_bytes()) - self._base


def matmul_peak_flops(dtype: torch.dtype, device: torch.device, size: int | None = None
                      ) -> float:
    """The machine's measured matrix-multiply rate (FLOP/s) for square products in dtype.

    GPUs reach their peak only on large products (on an H200, 2048^2 gives about half of
    what 8192^2 gives, which overstated MFU ~2x), so the default size is 8192 there; 2048 on
    the CPU, where a larger product adds seconds and no rate. The fastest of a second's
    calls counts, not their median: on a shared machine a neighbour's burst slowed the
    median enough to read MFU above 100% (ViT-B/16 at batch 1, 2026-12-02).
    """
    size = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    seconds = time_call(lambda: a @ b, device, min_time=1.0, best=True)
    return 2 * size**3 / seconds
