"""The fast inference path keeps the logits; `vitkit bench` measures and compares."""

from __future__ import annotations

import time

import torch

import vitkit
from tests.conftest import randomise
from vitkit.bench.timing import PeakMemory, time_call
from vitkit.cli.main import main
from vitkit.infer.optimize import optimize_for_inference


def test_optimize_for_inference_keeps_the_logits_in_fp32_and_bf16() -> None:
    model = randomise(vitkit.create_model("vit_tiny_patch16_224", depth=2, img_size=32,
                                          num_classes=10), seed=1).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    fast = optimize_for_inference(model, dtype=torch.float32)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), expected, rtol=1e-5, atol=1e-5)
        low = optimize_for_inference(model, dtype=torch.bfloat16)(x)
    assert low.dtype == torch.float32
    assert (low - expected).abs().max() < 0.05 * expected.abs().max()
    assert model.pos_embed.dtype == torch.float32  # the original is untouched
    assert model.pos_embed.requires_grad


def test_bench_prints_the_machine_the_peak_and_a_table_with_ratios(capsys) -> None:
    status = main(["bench", "--model", "vit_cifar_patch4_32", "--depth", "1", "--batch-size",
                   "4", "--mode", "inference", "train", "--precision", "fp32", "--peers",
                   "timm", "hf", "--rounds", "1", "--min-time", "0.05"])
    assert status == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    names = [line.split("|")[3].strip() for line in table[1:]]  # after the header
    # inference: the fast path, then vitkit like-for-like under autocast beside the peers
    assert names == ["vitkit", "vitkit autocast", "timm", "hf", "vitkit", "timm", "hf"]
    assert "| 1.00x |" in out  # timm's own ratio
    assert "measured matmul peak" in out and "| train | fp32 | hf |" in out
    assert f"torch {torch.__version__}" in out  # the machine line


def test_peak_memory_counts_a_second_allocation_like_the_first() -> None:
    # The allocator keeps freed memory for reuse; a resident-set count would see the second
    # workload's 64 MiB as free. Peaks are sampled, so the tensor lives for 50 ms.
    peaks = []
    for _ in range(2):
        with PeakMemory(torch.device("cpu")) as memory:
            block = torch.ones(64 * 2**20 // 4)
            time.sleep(0.05)
            del block
        peaks.append(memory.peak_bytes / 2**20)
    assert all(60 <= peak < 80 for peak in peaks), peaks


def test_training_benchmark_on_real_batches(tmp_path, capsys) -> None:
    status = main(["bench", "--model", "vit_digits_patch2_8", "--depth", "1", "--batch-size",
                   "8", "--mode", "train", "--precision", "fp32", "--peers", "timm",
                   "--rounds", "1", "--min-time", "0.05", "--data", "digits"])
    assert status == 0
    out = capsys.readouterr().out
    assert "1437 images of digits" in out
    assert "| train | fp32 | vitkit |" in out and "| train | fp32 | timm |" in out


def test_the_table_gives_each_path_beside_timm_eager_and_compiled() -> None:
    from vitkit.bench.throughput import Row, format_table

    rows = [Row("inference", "bf16", name, rate, 10.0, 0.5) for name, rate in (
        ("vitkit int8", 60.0), ("vitkit onnx-int8", 45.0), ("timm", 20.0),
        ("timm compiled", 40.0), ("vitkit fp8 compiled", 80.0))]
    lines = format_table(rows).splitlines()
    assert "| vs timm | vs timm compiled |" in lines[0]
    assert lines[2] == "| inference | bf16 | vitkit int8 | 60.0 | 3.00x | 1.50x | 10 | - |"
    assert lines[5] == "| inference | bf16 | timm compiled | 40.0 | 2.00x | 1.00x | 10 | 50% |"
    # no MFU against the bf16 peak for float8 products
    assert lines[6] == "| inference | bf16 | vitkit fp8 compiled | 80.0 | 4.00x | 2.00x | 10 | - |"
    assert "vs timm compiled" not in format_table(rows[:3])  # no compiled peer timed


def test_the_peak_counts_the_fastest_call_and_a_workload_its_median():
    """A neighbour's burst slows some calls: the matmul peak takes the fastest (else MFU
    reads above 100%), a workload's time the median (else it flatters the workload)."""
    def calls(seconds):
        pauses = iter(seconds)
        return lambda: time.sleep(next(pauses))

    cpu = torch.device("cpu")
    assert time_call(calls([0.03, 0.03, 0.001, 0.03]), cpu, min_time=0, best=True) < 0.02
    assert time_call(calls([0.03, 0.03, 0.001, 0.03]), cpu, min_time=0) > 0.02
