"""`vitkit bench`: images/s, memory and MFU of vitkit beside timm and Hugging Face."""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass

from vitkit.models import ViTConfig, get_config

from .main import CommandError

PEER_MODULES = {"timm": "timm", "hf": "transformers"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="measure throughput against timm and Hugging Face")
    parser.add_argument("--model", default="vit_base_patch16_224", help="a preset name")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=None, help="override the resolution")
    parser.add_argument("--depth", type=int, default=None, help="override the number of blocks")
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--mode", nargs="+", choices=["inference", "train"],
                        default=["inference"])
    parser.add_argument("--precision", nargs="+", choices=["auto", "fp32", "bf16"],
                        default=["auto"],
                        help="'auto': what vitkit's commands pick for this model: fp32, or bf16 "
                        "where the hardware has bf16 matrix units and it measures faster")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile, and on the CPU vitkit's int8 paths "
                        "(torchao through inductor; ONNX Runtime int8 of `vitkit export`)")
    parser.add_argument("--data", default=None,
                        help="train mode: feed every library real batches of this dataset "
                             "(folder, CSV or built-in name) through vitkit's augmentation")
    parser.add_argument("--peers", nargs="*", default=None,
                        help="peer libraries to compare (default: those installed of timm, hf)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds per timing")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class Measured:
    """What one `vitkit bench` run measured: the machine, the matmul peaks and the table."""

    machine: str
    peaks: str  # the measured matmul peak of each precision, one line
    table: str  # Markdown, one row per workload


def run(args: argparse.Namespace) -> int:
    """Time the workloads and print the table (benchmarks/throughput.py records it)."""
    print(measure(args).table)
    return 0


def measure(args: argparse.Namespace) -> Measured:
    """Time vitkit beside its peers as `args` asks, printing progress as it goes."""
    overrides = {k: v for k, v in (("img_size", args.img_size), ("depth", args.depth),
                                   ("num_classes", args.num_classes)) if v is not None}
    config = get_config(args.model, **overrides)
    if type(config) is not ViTConfig:  # the peers (timm, transformers) are plain ViTs
        raise CommandError(f"bench times plain ViTs beside timm and transformers; {args.model} "
                           "is a hybrid or a CNN")
    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
    import torch  # after the flags are checked: it takes seconds to import

    from vitkit.bench.throughput import (
        bench_precisions,
        format_table,
        machine_description,
        peaks_line,
    )
    from vitkit.bench.throughput import run as run_bench
    from vitkit.bench.timing import matmul_peak_flops
    from vitkit.device import default_device

    if args.threads:
        torch.set_num_threads(args.threads)
    peers = args.peers
    if peers is None:
        peers = [p for p, module in PEER_MODULES.items() if importlib.util.find_spec(module)]
    for peer in peers:
        if peer not in PEER_MODULES:
            raise CommandError(f"unknown peer {peer!r}; choose from {', '.join(PEER_MODULES)}")
        if not importlib.util.find_spec(PEER_MODULES[peer]):
            raise CommandError(f"peer {peer!r} needs `pip install {PEER_MODULES[peer]}`")
    device = default_device()
    precisions = {mode: bench_precisions(args.precision, mode, config, args.batch_size, device)
                  for mode in args.mode}
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {p: matmul_peak_flops(dtypes[p], device)
             for p in dtypes if any(p in chosen for chosen in precisions.values())}
    machine = machine_description(device)
    print(f"{machine}\n{peaks_line(peaks)}", flush=True)
    batches = None
    if args.data and "train" in args.mode:
        from vitkit.bench.workloads import augmented_batches
        from vitkit.data import load_splits

        dataset = load_splits(args.data, in_chans=config.in_chans).train
        if dataset.num_classes != config.num_classes:
            config = get_config(args.model, **{**overrides, "num_classes": dataset.num_classes})
        batches = augmented_batches(dataset, config, args.batch_size)
        print(f"training batches: {len(dataset)} images of {args.data}, small-data "
              "augmentation inside each timed step", flush=True)
    rows = []
    for mode in args.mode:
        for precision in precisions[mode]:
            print(f"timing {args.model} {mode} {precision} batch {args.batch_size} "
                  f"({', '.join(['vitkit'] + peers)})...", flush=True)
            rows += run_bench(config, mode, args.batch_size, dtypes[precision], device, peers,
                              args.compile, args.rounds, args.min_time, peaks[precision],
                              batches=batches if mode == "train" else None)
    return Measured(machine, peaks_line(peaks), format_table(rows))
