"""How OpenMP's idle threads wait, measured: before torch loads, vitkit sets
OMP_WAIT_POLICY=PASSIVE (threads sleep at once), or on Intel CPUs GOMP_SPINCOUNT=2000 (a short
spin first); libgomp's other settings spin for GOMP_SPINCOUNT iterations. Each setting runs
`vitkit bench` in a process of its own (the policy is read once, when torch loads OpenMP): a
small model's training step (many short parallel regions) on a quiet CPU and beside busy
processes, and ViT-S/16 inference (batch 1, and 32 with `--batch-sizes 1 32`) with every path
and timm compiled side by side.

    python benchmarks/omp_wait_policy.py [--spins 2000 10000] [--hogs 2] [--no-inference]
        [--batch-sizes 1 32] [--train-rounds 3]

The numbers decide whether a short spin may become the default on this CPU kind: it must
not lose much when other processes want the cores (PASSIVE's reason to be).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from results_writer import add_options, table, write_section

TRAIN = ["--model", "vit_digits_patch2_8", "--mode", "train", "--precision", "fp32",
         "--batch-size", "64", "--peers", "--rounds", "2", "--min-time", "3"]
INFERENCE = ["--model", "vit_small_patch16_224", "--compile", "--peers", "timm", "--rounds", "3"]
PATHS = ("vitkit int8", "vitkit compiled", "vitkit onnx-int8", "timm compiled")
HOG = "while True: pass"
# libgomp's own default, as a process without vitkit has it (threads spin 300,000 times
# before they sleep, fewer when there are more threads than cores). 'undefined' is a value
# libgomp ignores, so it acts as if unset, while its presence stops vitkit setting PASSIVE.
LIBGOMP_DEFAULT = {"OMP_WAIT_POLICY": "undefined"}
# libgomp's wait settings as this process started, before `import vitkit` (here or in a
# benchmark that imports this module first) added its own to os.environ.
WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
STARTING_WAIT = {key: os.environ.get(key) for key in WAIT_KEYS}


def child_environ(env: dict[str, str]) -> dict[str, str]:
    """The environment for a child process: this one's, with libgomp's wait settings as they
    were when it started (a child timed under "libgomp's default" must not inherit the spin
    count `import vitkit` set here), and `env` on top."""
    base = {k: v for k, v in os.environ.items() if k not in WAIT_KEYS}
    base.update({k: v for k, v in STARTING_WAIT.items() if v is not None})
    return {**base, **env}


def settings(spins: list[int]) -> dict[str, dict[str, str]]:
    """Environment of each setting (`LIBGOMP_DEFAULT` and spin counts on top of it), the one
    `import vitkit` picks on this CPU (`vitkit.cpu.omp_wait_settings`) named as such."""
    from vitkit.cpu import omp_wait_settings

    found = {"PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}}
    for count in spins:
        found[f"spin {count}"] = {**LIBGOMP_DEFAULT, "GOMP_SPINCOUNT": str(count)}
    found["libgomp's default (spin 300000)"] = dict(LIBGOMP_DEFAULT)
    found["ACTIVE"] = {"OMP_WAIT_POLICY": "ACTIVE"}
    default = omp_wait_settings({})
    return {name + (" (vitkit's default)" if env.items() >= default.items() else ""): env
            for name, env in found.items()}


def bench(argv: list[str], env: dict[str, str], hogs: int = 0) -> dict[str, float]:
    """images/s of each row of one `vitkit bench` run, with `hogs` busy processes beside."""
    busy = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
    try:
        time.sleep(0.5 if hogs else 0)
        out = subprocess.run([sys.executable, "-m", "vitkit", "bench", *argv],
                             capture_output=True, text=True, check=True,
                             env=child_environ(env)).stdout
    finally:
        for process in busy:
            process.kill()
            process.wait()
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) > 3 and cells[0] in ("train", "inference"):
            rows[cells[2]] = float(cells[3])
    return rows


def train_rates(envs: dict[str, dict[str, str]], rounds: int, hogs: int
                ) -> dict[str, tuple[list[float], list[float]]]:
    """The small model's training images/s under each setting, quiet and beside `hogs` busy
    processes, `rounds` times: every setting in turn each round, so that a noisy spell on a
    shared machine falls on all of them."""
    rates = {name: ([], []) for name in envs}
    for _ in range(rounds):
        for name, env in envs.items():
            rates[name][0].append(bench(TRAIN, env)["vitkit"])
            rates[name][1].append(bench(TRAIN, env, hogs)["vitkit"])
            print(name, rates[name][0][-1], rates[name][1][-1], flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spins", nargs="+", type=int, default=[2000, 10000])
    parser.add_argument("--hogs", type=int, default=2, help="busy processes beside the run")
    parser.add_argument("--no-inference", action="store_true")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1],
                        help="ViT-S/16 inference batches")
    parser.add_argument("--train-rounds", type=int, default=1,
                        help="rounds of the training rows, every setting in turn each round")
    add_options(parser)
    args = parser.parse_args()
    envs = settings(args.spins)
    train_rows = [[name, *(" / ".join(f"{rate:.0f}" for rate in rates) for rates in pair)]
                  for name, pair in train_rates(envs, args.train_rounds, args.hogs).items()]
    inference_rows = {}
    for batch in [] if args.no_inference else args.batch_sizes:
        inference_rows[batch] = []
        for name, env in envs.items():
            rates = bench([*INFERENCE, "--batch-size", str(batch)], env)
            inference_rows[batch].append(
                [name] + [f"{rates.get(k, float('nan')):.1f}" for k in PATHS]
                + [f"{max(rates[k] for k in PATHS[:3]) / rates['timm compiled']:.2f}x"])
            print(batch, inference_rows[batch][-1], flush=True)
    body = ("vit_digits_patch2_8, training step, fp32, batch 64, images/s"
            + (f" ({args.train_rounds} rounds)" if args.train_rounds > 1 else "") + ":\n\n"
            + table(["setting", "quiet", f"beside {args.hogs} busy processes"], train_rows,
                    "lrr"))
    for batch, rows in inference_rows.items():
        body += (f"\n\nvit_small_patch16_224, inference, batch {batch}, images/s (one process "
                 "each, every path side by side):\n\n"
                 + table(["setting", *PATHS, "vitkit's fastest / timm compiled"], rows,
                         "lrrrrr"))
    print(body)
    if not args.no_record:
        from vitkit.bench.throughput import cpu_kind

        write_section(f"OpenMP wait policy: PASSIVE against a short spin, {cpu_kind()} "
                      "(benchmarks/omp_wait_policy.py)", body, path=args.results)


if __name__ == "__main__":
    main()
