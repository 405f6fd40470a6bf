"""Does a run trained with precision='fp8' end where fp32 and bf16 runs end? The same model,
data, recipe and epochs trained in each precision for a few seeds; test top-1 and seconds.

    python benchmarks/fp8_training_accuracy.py [--data digits] [--epochs 30] [--seeds 0 1 2]
        [--model NAME] [--device cuda]

On a CPU, float8 is emulated by torchao (right, and slower than bf16), so only the accuracy
means anything there; on a GPU of compute capability 8.9+ the seconds do too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from results_writer import add_options, command_line, table, write_section

from vitkit.bench.throughput import machine_description
from vitkit.train import plan_training

PRECISIONS = ("fp32", "bf16", "fp8")


def train_once(data: str, model: str | None, epochs: float, precision: str, seed: int,
               device: str | None, out: Path) -> dict:
    planned = plan_training(data, out / f"{precision}-{seed}", model=model,
                            overrides={"epochs": epochs}, precision=precision, seed=seed,
                            device=device, progress=False)
    return planned.fit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--model", default=None, help="default: the one fitted to the data")
    parser.add_argument("--epochs", type=float, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default=None)
    add_options(parser)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {p: [] for p in PRECISIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:  # seeds outermost: a noisy moment hits every precision alike
            for precision in PRECISIONS:
                summary = train_once(args.data, args.model, args.epochs, precision, seed,
                                     args.device, Path(tmp))
                results[precision].append(summary)
                print(f"{precision} seed {seed}: test top-1 {summary['test_top1']:.4f}, "
                      f"{summary['seconds']:.0f} s", flush=True)
    rows = []
    for precision, runs in results.items():
        top1 = [100 * r["test_top1"] for r in runs]
        rows.append([precision, ", ".join(f"{t:.1f}" for t in top1),
                     f"{statistics.mean(top1):.1f}",
                     f"{statistics.mean(r['seconds'] for r in runs):.0f}"])
    body = table(["precision", "test top-1 % by seed", "mean", "seconds per run"], rows, "lrrr")
    print(body)
    if not args.no_record:
        write_section(f"fp8 training against fp32 and bf16, {args.data} "
                      "(benchmarks/fp8_training_accuracy.py)", body, command=command_line(),
                      machine=machine_description(args.device), path=args.results,
                      facts=[f"{args.epochs:g} epochs, seeds {args.seeds}, model "
                             f"{args.model or 'fitted to the data'}"])


if __name__ == "__main__":
    main()
