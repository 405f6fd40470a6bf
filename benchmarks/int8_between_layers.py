"""int8 inference with fp32 against bf16 between the int8 layers, side by side in one process:
which recipe `vitkit.infer.int8.int8_activations` should pick on this CPU. vitkit takes the
dtype the model's float forward pass runs faster in (bf16 only where the CPU has bf16 units
and it measures faster, `vitkit.infer.precision`); this checks that guess against int8
itself, per CPU kind.

    python benchmarks/int8_between_layers.py [--models vit_small_patch16_224 ...] [--batches 32 1]

Random weights and images (speed only), calibrated on 64 random images; each pair is timed in
6 interleaved rounds of about 64 images, after two warm-up calls.
"""

from __future__ import annotations

import argparse
import statistics
import time

from results_writer import add_options, table, write_section

ROUNDS = 6


def measure(name: str, batch: int, bf16_first: bool = False) -> list[list[str]]:
    """Images/s (median and best round) of both recipes for `name` at `batch`, built fp32
    first unless `bf16_first` (a graph built second in a process may run slower)."""
    import torch

    import vitkit
    from vitkit.infer.batches import model_inputs
    from vitkit.infer.int8 import int8_activations, quantize_int8

    generator = torch.Generator().manual_seed(0)
    model = vitkit.create_model(name).eval()
    shape = (model.config.in_chans, *model.config.img_size)
    pixels = torch.randint(0, 256, (64, *shape), dtype=torch.uint8, generator=generator)
    inputs = model_inputs(model, torch.randint(0, 256, (batch, *shape), dtype=torch.uint8,
                                               generator=generator))
    paths, builds = {}, {}
    with torch.no_grad():
        order = (torch.float32, torch.bfloat16)
        for dtype in reversed(order) if bf16_first else order:
            start = time.perf_counter()
            paths[dtype] = quantize_int8(model, pixels, activations=dtype)
            paths[dtype](inputs)
            paths[dtype](inputs)
            builds[dtype] = time.perf_counter() - start
        default = int8_activations(model)
        calls = max(1, 64 // batch)
        rates: dict = {dtype: [] for dtype in paths}
        for _ in range(ROUNDS):
            for dtype, path in paths.items():
                start = time.perf_counter()
                for _ in range(calls):
                    path(inputs)
                rates[dtype].append(calls * batch / (time.perf_counter() - start))
    return [[name, str(batch), str(dtype).removeprefix("torch."),
             "yes" if dtype == default else "",
             f"{statistics.median(rates[dtype]):.1f}", f"{max(rates[dtype]):.1f}",
             f"{statistics.median(rates[dtype]) / statistics.median(rates[torch.float32]):.2f}x",
             f"{builds[dtype]:.0f}"] for dtype in sorted(paths, key=str, reverse=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+",
                        default=["vit_small_patch16_224", "vit_base_patch16_224"])
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 1])
    parser.add_argument("--bf16-first", action="store_true",
                        help="build the bf16 recipe first (default: fp32 first)")
    add_options(parser)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        for batch in args.batches:
            rows += measure(name, batch, args.bf16_first)
            print(rows[-2], rows[-1], sep="\n", flush=True)
    body = table(["model", "batch", "between the int8 layers", "vitkit's default here",
                  "images/s median", "images/s best", "median vs fp32", "build s"], rows,
                 "lrllrrrr")
    print(body)
    if not args.no_record:
        from vitkit.bench.throughput import cpu_kind

        write_section(f"int8 with fp32 or bf16 between its layers, {cpu_kind()} "
                      "(benchmarks/int8_between_layers.py)", body, path=args.results)


if __name__ == "__main__":
    main()
