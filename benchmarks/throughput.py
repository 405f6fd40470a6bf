"""`vitkit bench` runs recorded in benchmarks/RESULTS.md, one section per run.

    python benchmarks/throughput.py [--quick] [--compile] [--precision bf16]   # the three runs
    python benchmarks/throughput.py --model vit_base_patch16_224 --batch-size 256 --mode train

With no --model, the speed benchmarks of issue 5: inference of vit_base_patch16_224 at batch
16 and vit_small_patch16_224 at batch 32, training of a CIFAR-sized ViT (32x32, patch 4, dim
192, 6 layers) at batch 128; the other options are passed to each. With --model, the options
are one `vitkit bench` run. Each row is timed beside timm and Hugging Face transformers in the
same process.
"""

from __future__ import annotations

import argparse

from results_writer import add_options, command_line, write_section

from vitkit.cli.bench import measure
from vitkit.cli.main import build_parser

STANDARD_RUNS = [
    ["--model", "vit_base_patch16_224", "--batch-size", "16", "--mode", "inference"],
    ["--model", "vit_small_patch16_224", "--batch-size", "32", "--mode", "inference"],
    ["--model", "vit_cifar_patch4_32", "--depth", "6", "--batch-size", "128", "--mode", "train"],
]
TITLES = {"vit_cifar_patch4_32, batch 128": "CIFAR-sized ViT (dim 192, depth 6), training, "
                                            "batch 128"}


def cli() -> None:
    """Run the standard runs, or the one that the `vitkit bench` options describe."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False,
                                     epilog="other options go to `vitkit bench`")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--title", default=None, help="the section's title (one run only)")
    add_options(parser)
    args, bench_args = parser.parse_known_args()
    timing = ["--rounds", "1", "--min-time", "1"] if args.quick else ["--rounds", "3"]
    one = any(arg.split("=")[0] == "--model" for arg in bench_args)
    runs = [bench_args] if one else [run + bench_args for run in STANDARD_RUNS]
    for run in runs:
        bench = build_parser().parse_args(["bench", *timing, *run])
        measured = measure(bench)
        print(measured.table)
        title = f"{bench.model}, batch {bench.batch_size}"
        if not args.no_record:
            write_section(args.title or TITLES.get(title, title), measured.table,
                          command=command_line(),
                          machine=measured.machine, facts=[measured.peaks], path=args.results)


if __name__ == "__main__":
    cli()
