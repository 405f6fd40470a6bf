"""Issue 24: vitkit's fastest inference path against timm's fastest, ViT-S/16 and ViT-B/16 at
batch 32 (throughput) and batch 1 (latency), every path timed side by side in one process
(`vitkit bench --compile`), and the accuracy the int8 paths keep on a held-out set. timm is
timed twice: beside vitkit, under vitkit's OpenMP settings, and again under libgomp's
default, as a timm user runs it, there in fp32 and, where the CPU has bf16 units, bf16; its
fastest figure is the one to beat. vitkit runs in the dtype its commands pick
(`bench --precision auto`).

    python benchmarks/inference_paths.py [--quick] [--models vit_small_patch16_224 ...]
        [--accuracy-checkpoint RUN/checkpoint --accuracy-data data/cifar10]

With `--cap-isa` it emulates a smaller CPU on a bigger one: every process runs with oneDNN
capped (ONEDNN_MAX_CPU_ISA) and, at AVX2, PyTorch's own kernels too (ATEN_CPU_CAPABILITY).
`AVX512_CORE_VNNI` is an AVX-512 CPU with VNNI but no BF16 (Cascade Lake, Ice Lake);
`AVX2` an AVX2-only one. ONNX Runtime obeys neither variable, and OpenVINO is not known to:
where the cap takes away what they use (AVX-512, VNNI), their rows are measured with the
whole CPU, shown, and left out of vitkit's fastest.

For each model and batch it also asks `--backend auto` (`vitkit.infer.choose_backend`, with
calibration images, for serving) in a fresh process with an empty cache, and sets its pick
beside the fastest path of the side-by-side run.

The accuracy part evaluates a trained checkpoint on the data's test split in fp32 (eager) and
int8 (calibrated on 512 train images spread evenly; fp32 between its layers, and bf16 too
where the CPU has bf16 units), onnx-int8 (ONNX Runtime, int8 dynamic) and, where installed,
openvino (in the dtype vitkit's commands pick), through `vitkit.infer.evaluate`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omp_wait_policy import LIBGOMP_DEFAULT, child_environ
from results_writer import add_options, command_line, table, write_section

MODELS = ["vit_small_patch16_224", "vit_base_patch16_224"]
BATCHES = [32, 1]
CIFAR_CHECKPOINT = ("runs/scaling-distill/runs/"
                    "vit_cifar_mini_patch4_32_distilled_from_resnet20_f1_s0/checkpoint")
TITLE = "Inference paths: vitkit's fastest against timm's fastest (issue 24)"
# --cap-isa: the section's title, and the environment that makes a bigger CPU run as a
# smaller one
CAPS = {"AVX2": ("an AVX2-only CPU emulated",
                 {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}),
        "AVX512_CORE_VNNI": ("a CPU without AVX-512 BF16 emulated",
                             {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"})}


def rows_of(markdown: str) -> dict[str, float]:
    """images/s of each implementation in a `vitkit bench` table, named with its precision
    where the table has more than one."""
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in markdown.splitlines()[2:]]
    several = len({cells[1] for cells in rows}) > 1
    return {f"{cells[2]} ({cells[1]})" if several else cells[2]: float(cells[3])
            for cells in rows}


# timm as its users run it: in a process without vitkit's OpenMP wait settings, under
# libgomp's default (`omp_wait_policy.LIBGOMP_DEFAULT`; until 2026-12-01 spelled
# GOMP_SPINCOUNT=300000, which leaves out libgomp's lower count for oversubscribed threads).
# Measured: timm compiled at batch 1 ran 26.0 images/s under PASSIVE and 32.0 so.


def bench(model: str, batch: int, timing: list[str], env: dict[str, str],
          precisions: tuple[str, ...] = ("auto",)) -> tuple[str, str]:
    """One `vitkit bench --compile` child process: its machine line and its table."""
    argv = [sys.executable, "-m", "vitkit", "bench", "--model", model, "--batch-size",
            str(batch), "--compile", "--peers", "timm", "--precision", *precisions, *timing]
    out = subprocess.run(argv, capture_output=True, text=True, check=True,
                         env=child_environ(env)).stdout
    return out.splitlines()[0], "\n".join(line for line in out.splitlines()
                                          if line.startswith("|"))


def speed(models: list[str], batches: list[int], quick: bool, wait_policy: str | None = None,
          onnx_unfaithful: bool = False) -> tuple[str, str, list[str]]:
    """Per model and batch, two `vitkit bench --compile` runs, each in a process of its own (a
    second int8 graph built in a process that already compiled one ran 0.8x as fast:
    measured 41 against 50 images/s), every path side by side inside each: one under vitkit's
    OpenMP settings, whose vitkit rows count, and one under libgomp's default, as timm's users
    run it; timm's fastest is the faster of its figures in the two. The summary table, the
    machine and the full tables."""
    summary, tables, machine = [], [], ""
    timing = ["--rounds", "1", "--min-time", "1"] if quick else ["--rounds", "3"]
    for model in models:
        for batch in batches:
            machine, ours_table = bench(model, batch, timing,
                                        {"OMP_WAIT_POLICY": wait_policy} if wait_policy else {})
            _, theirs_table = bench(model, batch, timing, LIBGOMP_DEFAULT, timm_precisions())
            tables.append(f"{model}, batch {batch}, vitkit's settings:\n\n{ours_table}")
            tables.append(f"{model}, batch {batch}, libgomp's default (timm as its users run "
                          f"it):\n\n{theirs_table}")
            rates = rows_of(ours_table)
            ours = {k: v for k, v in rates.items() if k.startswith("vitkit")
                    and not (onnx_unfaithful and ("onnx" in k or "openvino" in k))}
            peers = {f"{k}, vitkit's settings": v for k, v in rates.items()
                     if k.startswith("timm")}
            peers.update({f"{k}, libgomp's default": v
                          for k, v in rows_of(theirs_table).items() if k.startswith("timm")})
            best, peer = max(ours, key=ours.get), max(peers, key=peers.get)
            picked = auto_choice(model, batch, wait_policy)
            summary.append([model, batch, peer, f"{peers[peer]:.1f}", best, f"{ours[best]:.1f}",
                            f"{ours[best] / peers[peer]:.2f}x", picked])
            print(summary[-1], flush=True)
    header = ["model", "batch", "timm's fastest", "images/s", "vitkit's fastest", "images/s",
              "ratio", "--backend auto picks"]
    return table(header, summary, "llrrlrrl"), machine, tables


def timm_precisions() -> tuple[str, ...]:
    """The dtypes timm is timed in as its users run it: fp32, and bf16 where the CPU has bf16
    units (bf16 is not always the faster there: on an Intel Xeon with AVX-512 BF16 and no AMX
    timm compiled ran ViT-S/16 at 17.6 images/s in fp32 against 11.1 in bf16)."""
    from vitkit.device import cpu_has_bf16_matrix_units

    return ("fp32", "bf16") if cpu_has_bf16_matrix_units() else ("fp32",)


def auto_choice(model: str, batch: int, wait_policy: str | None) -> str:
    """What `--backend auto` picks for serving `model` at `batch` on this machine, measured
    from nothing in a process of its own; the pick and its figures."""
    with tempfile.TemporaryDirectory(prefix="vitkit-auto-") as cache:
        # vitkit's default settings, set here: the child imports torch (libgomp reads them
        # then) before vitkit could set them.
        from vitkit.cpu import omp_wait_settings

        env = child_environ({"VITKIT_CACHE": cache})
        if wait_policy:
            env["OMP_WAIT_POLICY"] = wait_policy
        env.update(omp_wait_settings(env))
        out = subprocess.run([sys.executable, __file__, "--auto-choice", model, str(batch)],
                             capture_output=True, text=True, check=True, env=env).stdout
    return out.strip().splitlines()[-1]


def print_auto_choice(model_name: str, batch: int) -> None:
    """`choose_backend` for serving a randomly initialised `model_name` at `batch`, with 64
    random calibration images (so every path is a candidate), printed on one line."""
    import torch

    import vitkit
    from vitkit.device import default_dtype
    from vitkit.infer import choose_backend

    model = vitkit.create_model(model_name).eval()
    pixels = torch.randint(0, 256, (64, model.config.in_chans, *model.config.img_size),
                           dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cpu = torch.device("cpu")
    choice, _ = choose_backend(model, default_dtype(cpu), cpu, batch, None, pixels)
    figures = "; ".join(t.describe(n) for n, t in choice.timings.items())
    print(f"{choice.backend} ({figures})")


def checkpoint_on_test(checkpoint: Path, data: Path) -> tuple:
    """The checkpoint's model, `data`'s test split read as the checkpoint's preprocessing
    reads it, and 512 of its training images to calibrate int8 on."""
    import vitkit
    from vitkit.data import find_images, load_splits
    from vitkit.infer import calibration_images

    model = vitkit.load_pretrained(checkpoint).eval()
    prep = model.meta.preprocessing
    test = load_splits(str(data), img_size=tuple(model.config.img_size),
                       in_chans=model.config.in_chans, crop_pct=prep.crop_pct,
                       interpolation=prep.interpolation, only="test").test
    pixels = calibration_images(model, find_images([str(data / "train")]), 512)
    return model, test, pixels


def accuracy(checkpoint: Path, data: Path) -> str:
    """Top-1 of the checkpoint on the test split: eager fp32, then each int8 path (torchao's
    with fp32 between its layers, and with bf16 where the CPU has bf16 units), and OpenVINO in
    the dtype vitkit's commands give it, where installed."""
    from importlib.util import find_spec

    import torch

    from vitkit.device import cpu_has_bf16_matrix_units, default_dtype
    from vitkit.infer import evaluate

    model, test, pixels = checkpoint_on_test(checkpoint, data)
    runs = [("eager", torch.float32), ("int8", torch.float32), ("onnx-int8", torch.float32)]
    if cpu_has_bf16_matrix_units():  # where the speed runs may take int8 with bf16 between
        runs.insert(2, ("int8", torch.bfloat16))
    if find_spec("openvino"):  # in the dtype the speed runs give it
        runs.append(("openvino", default_dtype(torch.device("cpu"))))
    rows = []
    for backend, dtype in runs:
        start = time.perf_counter()
        metrics = evaluate(model, test, dtype=dtype, backend=backend, calibration=pixels)
        label = backend if dtype != torch.bfloat16 else (
            f"{backend}, bf16" if backend == "openvino" else f"{backend}, bf16 between layers")
        rows.append([label, metrics["count"], f"{100 * metrics['top1']:.2f}",
                     f"{time.perf_counter() - start:.1f}"])
    rows[0].append("")
    for row in rows[1:]:
        row.append(f"{float(row[2]) - float(rows[0][2]):+.2f}")
    name = re.sub(r".*/runs/", "", str(checkpoint))
    return (f"{name} on {data.name} test:\n\n"
            + table(["path", "images", "top-1 %", "seconds", "vs fp32 (points)"], rows,
                    "lrrrr"))


def onnx_ignores_cap() -> bool:
    """Whether the instruction-set cap in force takes away kernels ONNX Runtime uses on this
    CPU (AVX-512, VNNI), which it would still use: its figures then are not the smaller
    CPU's."""
    from vitkit.cpu import cpu_facts, kernel_flags

    _, flags = cpu_facts()
    return any(f in flags and f not in kernel_flags() for f in ("avx512f", "avx512_vnni"))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batches", nargs="+", type=int, default=BATCHES)
    parser.add_argument("--quick", action="store_true", help="one short timing round")
    parser.add_argument("--accuracy-checkpoint", type=Path, default=Path(CIFAR_CHECKPOINT))
    parser.add_argument("--accuracy-data", type=Path, default=Path("data/cifar10"))
    parser.add_argument("--omp-wait-policy", choices=("ACTIVE", "PASSIVE"), default=None,
                        help="OpenMP's wait policy for the timed processes (default: vitkit's, "
                        "which `import vitkit` sets unless the environment says: PASSIVE, a "
                        "short spin on Intel CPUs)")
    parser.add_argument("--auto-choice", nargs=2, metavar=("MODEL", "BATCH"),
                        help=argparse.SUPPRESS)  # the child process of auto_choice
    parser.add_argument("--cap-isa", choices=CAPS, default=None,
                        help="emulate a smaller CPU: cap oneDNN (and, at AVX2, PyTorch's own "
                        "kernels) at this instruction set in every process")
    add_options(parser)
    args = parser.parse_args()
    if args.auto_choice:
        return print_auto_choice(args.auto_choice[0], int(args.auto_choice[1]))
    if args.cap_isa:  # before anything imports torch, here or in the child processes
        os.environ.update(CAPS[args.cap_isa][1])
    from vitkit.bench.throughput import cpu_kind

    parts = []
    title = TITLE + (f", OMP_WAIT_POLICY={args.omp_wait_policy}" if args.omp_wait_policy
                     else "") + f", {CAPS[args.cap_isa][0] if args.cap_isa else cpu_kind()}"
    if args.accuracy_checkpoint.exists() and args.accuracy_data.exists():
        parts.append(accuracy(args.accuracy_checkpoint, args.accuracy_data))
        print(parts[-1], flush=True)
    summary, machine, tables = speed(args.models, args.batches, args.quick, args.omp_wait_policy,
                                     onnx_unfaithful=onnx_ignores_cap())
    body = "\n\n".join([summary, *parts, "Every path, side by side:", *tables])
    print(body)
    if not args.no_record:
        write_section(title, body, command=command_line(), machine=machine, path=args.results)


if __name__ == "__main__":
    cli()
