"""Run workloads side by side and report images/s, memory, MFU and ratios to the peers."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass

import torch

from ..cpu import cpu_facts, isa_caps
from ..errors import first_line
from ..models import ViTConfig, forward_flops
from .timing import PeakMemory, matmul_peak_flops, synchronize, time_call
from .workloads import Batches, Workload, inference_workloads, training_workloads


@dataclass
class Row:
    """One measured workload."""

    mode: str
    precision: str
    name: str
    images_per_s: float
    peak_mib: float
    mfu: float  # model FLOP/s over the measured matmul peak in this precision

    def ratio_to(self, other: Row) -> float:
        return self.images_per_s / other.images_per_s


# /proc/cpuinfo flags that decide whether bf16 is native, and how RESULTS.md names them
CPU_FLAGS = (("avx2", "AVX2"), ("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX"))


def machine_description(device: torch.device | str | None = None) -> str:
    """One line naming the CPU (model, cores, bf16 units, any cap on what its kernels use),
    torch, and the GPU if `device` is one."""
    name, flags = cpu_facts()
    name = name or platform.processor() or platform.machine()
    units = [label for flag, label in CPU_FLAGS if flag in flags]
    if flags and "amx_bf16" not in flags:
        units.append("no AMX")
    units += isa_caps()  # e.g. "oneDNN capped at AVX2": the flags above are then not all used
    threads = torch.get_num_threads()
    parts = [name, f"{os.cpu_count()} cores", *units,
             f"{threads} thread{'s' if threads > 1 else ''}", f"torch {torch.__version__}"]
    if device is not None and torch.device(device).type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
    return ", ".join(parts)


def cpu_kind() -> str:
    """The kind of CPU in words, as RESULTS.md's section titles name it: the fastest path
    differs between kinds (AMX, AVX-512 BF16 by vendor, AVX-512, AVX2), so each keeps its own
    section."""
    name, flags = cpu_facts()
    if "amx_bf16" in flags:
        return "a CPU with AMX"
    if "avx512_bf16" in flags:  # AMD's and Intel's differ: on one Intel Xeon bf16 was slower
        vendor = next((v for v in ("AMD", "Intel") if v in name), None)
        return f"{'an ' + vendor if vendor else 'a'} CPU with AVX-512 BF16, no AMX"
    return "an AVX2-only CPU" if "avx512f" not in flags else "an AVX-512 CPU without BF16"


def bench_precisions(choices: list[str], mode: str, config: ViTConfig, batch: int,
                     device: torch.device) -> list[str]:
    """The precisions ('fp32', 'bf16') to time `mode` in, each once, in the order asked;
    'auto' is the one vitkit's commands pick for this model and batch: for inference
    `vitkit.infer.precision.inference_dtype`, for training `--precision auto`'s
    (`vitkit.train.precision.training_dtype`), both measured on CPUs with bf16 units."""
    from ..infer.precision import inference_dtype
    from ..models import VisionTransformer
    from ..train.precision import training_dtype

    names = {torch.float32: "fp32", torch.bfloat16: "bf16"}
    resolved: list[str] = []
    for choice in choices:
        if choice == "auto":
            model = VisionTransformer(config)
            dtype = (inference_dtype(model.to(device), device, batch) if mode == "inference"
                     else training_dtype(model.to(device), "auto", device, batch))
            choice = names[dtype]
        if choice not in resolved:
            resolved.append(choice)
    return resolved


def measure(workloads: list[Workload], device: torch.device, rounds: int,
            min_time: float) -> dict[str, tuple[float, float]]:
    """Seconds per step and peak memory of each workload, interleaving them round by round
    so that a noisy neighbour slows all of them alike. An optional workload that fails its
    warm-up is left out, saying why (a GPU session must not lose its other rows to it)."""
    memory: dict[str, float] = {}
    warmed = []
    for workload in workloads:  # warm-up (and compilation) outside the timed rounds
        try:
            with PeakMemory(device) as peak:
                workload.step()
                synchronize(device)
        except Exception as error:  # noqa: BLE001 - an optional path: the others remain
            if not workload.optional:
                raise
            print(f"{workload.name} left out: it failed here: {type(error).__name__}: "
                  f"{first_line(error)[:300]}", flush=True)
            continue
        memory[workload.name] = peak.peak_bytes
        warmed.append(workload)
    workloads = warmed
    seconds: dict[str, list[float]] = {w.name: [] for w in workloads}
    for _ in range(rounds):
        for workload in workloads:
            seconds[workload.name].append(
                time_call(workload.step, device, min_time=min_time, min_iters=2)
            )
    return {name: (statistics.median(s), memory[name]) for name, s in seconds.items()}


def run(
    config: ViTConfig, mode: str, batch: int, dtype: torch.dtype, device: torch.device,
    peers: list[str], compile: bool, rounds: int = 3, min_time: float = 2.0,
    peak: float | None = None, batches: Batches | None = None,
) -> list[Row]:
    """Benchmark one mode ('inference' or 'train') at one precision; returns a row each.
    `batches` feeds training steps from a real data pipeline (see `augmented_batches`)."""
    if mode == "inference":
        workloads = inference_workloads(config, batch, dtype, device, peers, compile)
    else:
        workloads = training_workloads(config, batch, dtype, device, peers, compile, batches)
    results = measure(workloads, device, rounds, min_time)
    peak = peak or matmul_peak_flops(dtype, device)
    flops_per_image = forward_flops(config) * (1 if mode == "inference" else 3)
    precision = "bf16" if dtype == torch.bfloat16 else "fp32"
    rows = []
    for name, (step_seconds, peak_bytes) in results.items():
        rate = batch / step_seconds
        rows.append(Row(mode, precision, name, rate, peak_bytes / 2**20,
                        rate * flops_per_image / peak))
    return rows


def format_table(rows: list[Row], baseline: str = "timm") -> str:
    """A Markdown table with each row's ratio to the baseline of its mode and precision, and to
    that baseline compiled where it was timed. int8 and fp8 rows have no MFU (no int8 or
    float8 peak measured)."""
    compiled = f"{baseline} compiled"
    with_compiled = any(r.name == compiled for r in rows)
    lines = [
        f"| mode | precision | implementation | images/s | vs {baseline} |"
        + (f" vs {compiled} |" if with_compiled else "") + " peak MiB | MFU |",
        "|---|---|---|---:|---:|" + ("---:|" if with_compiled else "") + "---:|---:|",
    ]
    for row in rows:
        cells = [row.mode, row.precision, row.name, f"{row.images_per_s:.1f}"]
        for name in [baseline] + ([compiled] if with_compiled else []):
            base = next((r for r in rows if r.name == name and r.mode == row.mode
                         and r.precision == row.precision), None)
            cells.append(f"{row.ratio_to(base):.2f}x" if base else "-")
        mfu = "-" if "int8" in row.name or "fp8" in row.name else f"{100 * row.mfu:.0f}%"
        lines.append("| " + " | ".join(cells + [f"{row.peak_mib:.0f}", mfu]) + " |")
    return "\n".join(lines)


def peaks_line(peaks: dict[str, float]) -> str:
    """The measured matmul peak of each precision, as one line."""
    text = ", ".join(f"{k} {v / 1e12:.3f} TFLOP/s" for k, v in peaks.items())
    return f"measured matmul peak (2048^2): {text}"
