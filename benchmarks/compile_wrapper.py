"""What inductor's C++ wrapper (`cpp_wrapper`, which `vitkit.infer.optimize.compile_frozen`
turns on for the CPU) is worth: vitkit's int8 and compiled paths, in their default dtypes,
at batch 1 and 32, with the wrapper on and off, each in a process of its own (the option is
read when a graph compiles), alternating, so that a noisy spell on a shared machine falls on
both.

    python benchmarks/compile_wrapper.py [--models vit_small_patch16_224 ...] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from results_writer import add_options, table, write_section

MODELS = ["vit_small_patch16_224", "vit_base_patch16_224"]
PATHS = ["int8", "compiled"]
BATCHES = [1, 32]


def measure(path: str, model_name: str, wrapper: bool) -> dict[int, tuple[float, float]]:
    """images/s (median call) and the first call's seconds, per batch, for one path built
    in this process with the wrapper on or off, under vitkit's OpenMP settings (which
    `import vitkit` sets only if it comes before torch's)."""
    import vitkit  # noqa: I001 - first
    import torch
    from vitkit.infer import optimize
    from vitkit.infer.int8 import quantize_int8

    if not wrapper:  # compile_frozen reads this when it compiles
        optimize.wrapper_options = lambda device: {}
    torch.manual_seed(0)
    model = vitkit.create_model(model_name).eval()
    if path == "int8":
        pixels = torch.randint(0, 256, (64, 3, 224, 224), dtype=torch.uint8)
        runner = quantize_int8(model, pixels)
    else:
        runner = optimize.optimize_for_inference(model, compile=True)
    found = {}
    with torch.no_grad():
        for batch in BATCHES:
            images = torch.randn(batch, 3, 224, 224)
            start = time.perf_counter()
            runner(images)
            first = time.perf_counter() - start
            for _ in range(max(3, 20 // batch)):
                runner(images)
            times = []
            for _ in range(max(8, 50 // batch)):
                start = time.perf_counter()
                runner(images)
                times.append(time.perf_counter() - start)
            found[batch] = (batch / statistics.median(times), first)
    return found


def child(path: str, model_name: str, wrapper: bool) -> dict[int, tuple[float, float]]:
    """`measure` in a fresh process."""
    argv = [sys.executable, __file__, "--child", path, model_name, str(int(wrapper))]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return {int(batch): (float(rate), float(first)) for batch, rate, first in
            (line.split() for line in out.strip().splitlines()[-len(BATCHES):])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    add_options(parser)
    args = parser.parse_args()
    if args.child:
        path, model_name, wrapper = args.child
        for batch, (rate, first) in measure(path, model_name, wrapper == "1").items():
            print(batch, rate, first)
        return
    rows = []
    for model_name in args.models:
        for path in PATHS:
            runs = {True: [], False: []}
            for _ in range(args.rounds):
                for wrapper in (False, True):
                    runs[wrapper].append(child(path, model_name, wrapper))
                    print(model_name, path, wrapper, runs[wrapper][-1], flush=True)
            for batch in BATCHES:
                off = [run[batch][0] for run in runs[False]]
                on = [run[batch][0] for run in runs[True]]
                rows.append([model_name, path, batch, " / ".join(f"{r:.1f}" for r in off),
                             " / ".join(f"{r:.1f}" for r in on),
                             f"{statistics.median(on) / statistics.median(off):.2f}x",
                             f"{statistics.median(run[batch][1] for run in runs[True]):.1f} / "
                             f"{statistics.median(run[batch][1] for run in runs[False]):.1f}"])
    body = table(["model", "path", "batch", "images/s, Python wrapper",
                  "images/s, C++ wrapper", "C++ / Python", "first call s, C++ / Python"],
                 rows, "llrrrrr")
    print(body)
    if not args.no_record:
        from vitkit.bench.throughput import cpu_kind

        write_section(f"inductor's C++ wrapper for the compiled inference paths, {cpu_kind()} "
                      "(benchmarks/compile_wrapper.py)", body, path=args.results)


if __name__ == "__main__":
    main()
