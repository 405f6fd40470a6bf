"""What this CPU's matrix kernels may use: the flags /proc/cpuinfo lists, less those an
instruction-set cap takes away. oneDNN, which runs PyTorch's CPU matrix products, obeys
ONEDNN_MAX_CPU_ISA: capped at AVX2 on a CPU with AVX-512 BF16, a bf16 matrix product
measured 186x slower than fp32 (600 against 3.2 ms), so every default that asks "are bf16
units there?" must ask what oneDNN may use, not only what the silicon has."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

# The /proc/cpuinfo flags that decide which matrix kernels oneDNN and inductor pick.
KERNEL_FLAGS = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16",
                "amx_int8")

# oneDNN's instruction-set levels, lowest first (its dnnl_cpu_isa_t), each taking in the ones
# before it; older names of the same level on the right.
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
               "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX10_1_512", "AVX10_1_512_AMX",
               "AVX10_1_512_AMX_FP16")
ONEDNN_ALIASES = {"AVX512_CORE_FP16": "AVX10_1_512", "AVX512_CORE_AMX": "AVX10_1_512_AMX",
                  "AVX512_CORE_AMX_FP16": "AVX10_1_512_AMX_FP16"}
# The lowest oneDNN level at which the kernels behind each flag run.
FLAG_NEEDS = {"avx2": "AVX2", "avx_vnni": "AVX2_VNNI", "avx512f": "AVX512_CORE",
              "avx512_vnni": "AVX512_CORE_VNNI", "avx512_bf16": "AVX512_CORE_BF16",
              "amx_bf16": "AVX10_1_512_AMX", "amx_int8": "AVX10_1_512_AMX"}


@functools.cache
def cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where there is no such file)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if not key.strip():
                    break  # the end of the first processor's block
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_facts() -> tuple[str, frozenset[str]]:
    """The CPU's model name and its /proc/cpuinfo flags ('' and none where there is no such
    file)."""
    info = cpuinfo()
    return info.get("model name", ""), frozenset(info.get("flags", "").split())


def onednn_cap() -> str | None:
    """The level oneDNN is capped at by ONEDNN_MAX_CPU_ISA (or its older name
    DNNL_MAX_CPU_ISA), in the names of `ONEDNN_ISAS`; None when it is not capped (unset,
    ALL, DEFAULT, or a name oneDNN would not know either)."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    value = value.strip().upper()
    value = ONEDNN_ALIASES.get(value, value)
    return value if value in ONEDNN_ISAS else None


def kernels_may_use(flag: str) -> bool:
    """Whether oneDNN's cap leaves it the kernels behind `flag` (one of `KERNEL_FLAGS`);
    whether the CPU has the flag is a separate question."""
    cap = onednn_cap()
    needs = FLAG_NEEDS.get(flag)
    return cap is None or needs is None or ONEDNN_ISAS.index(cap) >= ONEDNN_ISAS.index(needs)


def kernel_flags() -> tuple[str, ...]:
    """The `KERNEL_FLAGS` this CPU has and its kernels may use."""
    _, flags = cpu_facts()
    return tuple(f for f in KERNEL_FLAGS if f in flags and kernels_may_use(f))


def has_int8_dot_products() -> bool:
    """Whether the CPU's int8 kernels may use VNNI or AMX-INT8, which sum u8 x s8 products in
    32 bits. Without them (AVX2, AVX-512 before Cascade Lake) oneDNN adds pairs of products
    in 16 bits that saturate (vpmaddubsw) once activations use all 8 bits."""
    return any(f in kernel_flags() for f in ("avx_vnni", "avx512_vnni", "amx_int8"))


def isa_caps() -> list[str]:
    """What caps the instruction set below what the CPU has, in words (empty when nothing
    does): oneDNN's cap, and PyTorch's own kernel level (ATEN_CPU_CAPABILITY) when it is
    below AVX-512 on an AVX-512 CPU."""
    import torch

    caps = []
    _, flags = cpu_facts()
    cap = onednn_cap()
    if cap and any(f in flags and not kernels_may_use(f) for f in KERNEL_FLAGS):
        caps.append(f"oneDNN capped at {cap}")
    aten = torch.backends.cpu.get_cpu_capability()
    if "avx512f" in flags and not aten.startswith("AVX512"):
        caps.append(f"ATen kernels at {aten}")
    return caps


def omp_threads_sleep() -> bool:
    """Whether idle OpenMP threads sleep at once (OMP_WAIT_POLICY=PASSIVE, vitkit's default
    off Intel CPUs, with no GOMP_SPINCOUNT to make them spin first): every parallel region
    then pays for waking them, tens of microseconds."""
    policy = os.environ.get("OMP_WAIT_POLICY", "").strip().upper()
    return policy == "PASSIVE" and not os.environ.get("GOMP_SPINCOUNT", "").strip()


# On Intel CPUs idle OpenMP threads spin this many times (a pause each, about 140 cycles on
# Intel cores since Skylake: some 0.1 ms) before they sleep. Measured on a 2-core Xeon with
# AMX (benchmarks/omp_wait_policy.py, RESULTS.md), over six rounds a small model's training
# step ran 1.82-2.01x as fast as under PASSIVE on a quiet machine and 0.76-1.49x beside two
# busy processes (median 1.22x, and steadier), where longer spins (libgomp's 300000, ACTIVE)
# sometimes fell 30x behind. On AMD EPYCs the same short spin lost 10-50% beside busy
# processes: PASSIVE there.
INTEL_SPIN_COUNT = "2000"


def omp_wait_settings(environ: Mapping[str, str], vendor: str | None = None) -> dict[str, str]:
    """The OpenMP wait settings vitkit adds to `environ` before torch loads OpenMP, for a CPU
    of `vendor` (/proc/cpuinfo's vendor_id; default this CPU's): none where the user set
    OMP_WAIT_POLICY or GOMP_SPINCOUNT; a short spin (`INTEL_SPIN_COUNT`) on Intel; elsewhere
    PASSIVE, threads that sleep at once, because spinning threads can make a loaded small CPU
    many times slower."""
    if environ.get("OMP_WAIT_POLICY") or environ.get("GOMP_SPINCOUNT"):
        return {}
    if vendor is None:
        vendor = cpuinfo().get("vendor_id", "")
    if vendor == "GenuineIntel":
        return {"GOMP_SPINCOUNT": INTEL_SPIN_COUNT}
    return {"OMP_WAIT_POLICY": "PASSIVE"}
