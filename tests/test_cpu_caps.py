"""What the CPU's kernels may use, under an instruction-set cap (ONEDNN_MAX_CPU_ISA): with
oneDNN capped below AVX-512 BF16, bf16 matrix products are emulated (measured 186x slower
than fp32 on an AVX-512 BF16 EPYC), so the bf16 default must follow the cap, and choices
measured without it must not be read back under it. The CPU is simulated, so each case runs
whatever CPU runs the suite."""

from __future__ import annotations

import pytest
import torch

from vitkit import cpu, device, measured
from vitkit.bench import throughput
from vitkit.bench.throughput import machine_description

ZEN4 = ("AMD EPYC", frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "fma"}))
SAPPHIRE = ("Intel Xeon", frozenset({"avx2", "avx_vnni", "avx512f", "avx512_vnni",
                                     "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"}))
ALDER_LAKE = ("Intel Core i7-12700H", frozenset({"avx2", "avx_vnni", "fma"}))  # no AVX-512
ROME = ("AMD EPYC 7B12", frozenset({"avx2", "fma"}))


@pytest.fixture
def simulated(monkeypatch):
    """Set the CPU (name and flags, and torch's own bf16 checks to match) and the cap."""
    def set_cpu(facts: tuple[str, frozenset[str]], cap: str | None) -> None:
        monkeypatch.setattr(cpu, "cpu_facts", lambda: facts)
        monkeypatch.setattr(measured, "cpu_facts", lambda: facts)
        for check, flag in (("_is_amx_tile_supported", "amx_bf16"),
                            ("_is_avx512_bf16_supported", "avx512_bf16")):
            monkeypatch.setattr(torch.cpu, check, lambda f=flag: f in facts[1], raising=False)
        monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
        if cap is None:
            monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        else:
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        device.cpu_has_bf16_matrix_units.cache_clear()

    yield set_cpu
    device.cpu_has_bf16_matrix_units.cache_clear()


@pytest.mark.parametrize(("value", "level"), [
    (None, None), ("ALL", None), ("DEFAULT", None), ("no-such-isa", None),
    ("AVX2", "AVX2"), ("avx512_core_bf16", "AVX512_CORE_BF16"),
    ("AVX512_CORE_AMX", "AVX10_1_512_AMX"),  # the older name of the same level
])
def test_the_cap_is_read_as_onednn_reads_it(monkeypatch, value, level):
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if value is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", value)
    assert cpu.onednn_cap() == level


def test_the_older_variable_name_caps_too(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert cpu.kernels_may_use("avx512_vnni") and not cpu.kernels_may_use("avx512_bf16")


@pytest.mark.parametrize(("facts", "cap", "bf16", "flags"), [
    (ZEN4, None, True, ("avx2", "avx512f", "avx512_vnni", "avx512_bf16")),
    (ZEN4, "AVX512_CORE_VNNI", False, ("avx2", "avx512f", "avx512_vnni")),
    (ZEN4, "AVX2", False, ("avx2",)),
    (SAPPHIRE, "AVX512_CORE_BF16", True,
     ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16")),
    (SAPPHIRE, "AVX512_CORE_AMX", True, cpu.KERNEL_FLAGS),
    (SAPPHIRE, "AVX2", False, ("avx2",)),
])
def test_bf16_is_native_only_where_the_kernels_may_use_it(simulated, facts, cap, bf16, flags):
    simulated(facts, cap)
    assert device.cpu_has_bf16_matrix_units() is bf16
    assert device.default_dtype("cpu") == (torch.bfloat16 if bf16 else torch.float32)
    assert cpu.kernel_flags() == flags


@pytest.mark.parametrize(("facts", "cap", "vnni"), [
    (ZEN4, None, True), (ZEN4, "AVX512_CORE", False), (ZEN4, "AVX2", False),
    (SAPPHIRE, None, True), (SAPPHIRE, "AVX2", False),
    (ALDER_LAKE, None, True), (ROME, None, False),
])
def test_int8_dot_products_are_32_bit_only_with_vnni_or_amx(simulated, facts, cap, vnni):
    """Without VNNI (AVX2 only, or capped there) int8 kernels sum u8 x s8 products in 16
    bits, so int8 quantization must leave them headroom: the question follows the cap."""
    simulated(facts, cap)
    assert cpu.has_int8_dot_products() is vnni


def test_a_cap_the_cpu_is_under_anyway_changes_nothing(simulated):
    avx2_only = ROME
    simulated(avx2_only, None)
    uncapped = measured.choice_key("vit_small_patch16_224", 32)
    simulated(avx2_only, "AVX2")
    assert measured.choice_key("vit_small_patch16_224", 32) == uncapped
    assert not any("oneDNN" in cap for cap in cpu.isa_caps())


def test_choices_made_without_the_cap_are_measured_again_under_it(simulated):
    simulated(ZEN4, None)
    uncapped = measured.choice_key("vit_small_patch16_224", 32)
    assert "capped" not in machine_description()
    simulated(ZEN4, "AVX2")
    assert measured.choice_key("vit_small_patch16_224", 32) != uncapped
    assert "oneDNN capped at AVX2" in machine_description()


@pytest.mark.parametrize(("facts", "kind"), [
    (SAPPHIRE, "a CPU with AMX"), (ZEN4, "an AMD CPU with AVX-512 BF16, no AMX"),
    (("Intel(R) Xeon(R) Processor", SAPPHIRE[1] - {"amx_bf16", "amx_int8", "amx_tile"}),
     "an Intel CPU with AVX-512 BF16, no AMX"),
    (("Intel Xeon Gold 6248", frozenset({"avx2", "avx512f", "avx512_vnni"})),
     "an AVX-512 CPU without BF16"),
    (ALDER_LAKE, "an AVX2-only CPU"), (ROME, "an AVX2-only CPU"),
])
def test_each_cpu_kind_keeps_its_own_results_section(monkeypatch, facts, kind):
    monkeypatch.setattr(throughput, "cpu_facts", lambda: facts)
    assert throughput.cpu_kind() == kind
