"""LoRA against full fine-tuning of ViT-B/16: trainable parameters, peak memory and median
step time of the same training step (forward, cross-entropy, backward, AdamW step). Memory is
measured for each configuration alone in a fresh process, so that peaks don't mix; step times
in one process, the configurations stepped in turn, so that other work on a shared machine
slows them alike.

    python benchmarks/lora_memory.py                          # ViT-B/16 at 224, batch 8, CPU
    python benchmarks/lora_memory.py --ranks 8 16 --steps 5 --batch-size 8

The step is the trainer's (`vitkit.train.lora.add_lora`, `vitkit.train.optim.build_optimizer`
with the recipe's parameter groups), in fp32, on random images and labels (the numbers don't
depend on the weights). Recorded in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from results_writer import add_options, table, write_section

import vitkit
from vitkit.bench.throughput import machine_description
from vitkit.bench.timing import PeakMemory
from vitkit.train import get_recipe
from vitkit.train.lora import add_lora
from vitkit.train.optim import build_optimizer, set_lr

MMAP_THRESHOLD = 64 * 1024


def _rss_gib() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build(model_name: str, rank: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """ViT with 10 classes (with LoRA of `rank`; 0: full fine-tuning) and its AdamW."""
    torch.manual_seed(0)
    model = vitkit.create_model(model_name, num_classes=10).train()
    recipe = get_recipe("paper-finetune", optimizer="adamw", weight_decay=0.05, lora_rank=rank)
    if rank:
        add_lora(model, recipe)
    optimizer = build_optimizer(model, recipe)
    set_lr(optimizer, 1e-4)
    return model, optimizer


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: int) -> float:
    """One training step on random images and labels; its seconds."""
    images = torch.randn(batch, 3, *model.config.img_size)
    labels = torch.randint(0, 10, (batch,))
    start = time.perf_counter()
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def memory(model_name: str, rank: int, batch: int) -> dict:
    """Trainable count and memory of two steps (the AdamW moments exist from the first, the
    gradients are made again in the second): peak RSS, and glibc's peak bytes in use."""
    import peft  # noqa: F401 - in every configuration, so that the runtimes are the same size

    model, optimizer = build(model_name, rank)
    before = _rss_gib()
    with PeakMemory(torch.device("cpu")) as peak:
        for _ in range(2):
            step(model, optimizer, batch)
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters()), "rss_model_gib": before,
            "rss_peak_gib": _rss_gib(), "allocated_gib": peak.peak_bytes / 2**30}


def in_subprocess(args: argparse.Namespace, rank: int) -> dict:
    """`memory` in a fresh Python process (its own peak RSS), with glibc's mmap threshold
    fixed at 64 KiB so that freed tensors go back to the system and RSS tracks what is used."""
    command = [sys.executable, __file__, "--child", str(rank), "--model", args.model,
               "--batch-size", str(args.batch_size), "--no-record"]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def step_times(args: argparse.Namespace, ranks: list[int]) -> dict[int, float]:
    """Median step seconds of each configuration, all built in this process and stepped in
    turn (one step each per round), so that load from other work falls on all alike."""
    runs = {rank: build(args.model, rank) for rank in ranks}
    seconds: dict[int, list[float]] = {rank: [] for rank in ranks}
    for round_ in range(args.warmup + args.steps):
        for rank, (model, optimizer) in runs.items():
            took = step(model, optimizer, args.batch_size)
            if round_ >= args.warmup:
                seconds[rank].append(took)
    return {rank: statistics.median(times) for rank, times in seconds.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    add_options(parser)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(memory(args.model, args.child, args.batch_size)))
        return 0
    ranks = [0, *args.ranks]
    results = {rank: in_subprocess(args, rank) for rank in ranks}
    for rank, seconds in step_times(args, ranks).items():
        results[rank]["step_s"] = seconds
    full = results[0]
    def added(r: dict) -> float:  # what training added to the built model's RSS
        return r["rss_peak_gib"] - r["rss_model_gib"]

    rows = [["full fine-tuning" if rank == 0 else f"LoRA rank {rank}",
             f"{r['trainable']:,}", f"{r['trainable'] / r['total']:.2%}",
             f"{r['rss_peak_gib']:.2f}", f"{r['rss_peak_gib'] / full['rss_peak_gib']:.2f}",
             f"{added(r):.2f}", f"{added(r) / added(full):.2f}",
             f"{r['allocated_gib']:.2f}", f"{r['allocated_gib'] / full['allocated_gib']:.2f}",
             f"{r['step_s']:.2f}", f"{r['step_s'] / full['step_s']:.2f}"]
            for rank, r in results.items()]
    body = table(["configuration", "trainable", "of all", "peak RSS GiB", "x full",
                  "RSS added by training GiB", "x full", "peak allocated in training GiB",
                  "x full", "median step s", "x full"], rows, "lrrrrrrrrrr")
    print(body)
    if not args.no_record:
        write_section(f"LoRA against full fine-tuning, {args.model} at batch {args.batch_size} "
                      "on cpu (benchmarks/lora_memory.py)", body,
                      machine=machine_description(torch.device("cpu")), path=args.results,
                      facts=["fp32, 10 classes, AdamW, random images and labels; LoRA "
                             "(PEFT) on every block's qkv, proj, fc1, fc2 with the head "
                             "trainable; a step is forward, cross-entropy, backward, optimizer "
                             "step",
                             "memory: each configuration alone in a fresh process running 2 "
                             "steps, peft imported in all; peak RSS is the process's maximum "
                             "resident memory (getrusage), the runtime and weights included "
                             f"({full['rss_model_gib']:.2f} GiB after building the full model "
                             "and optimizer); RSS added by training is the peak minus that; "
                             "peak allocated is glibc's bytes in use (mallinfo2, sampled every "
                             "5 ms by vitkit.bench.timing.PeakMemory) during the steps above "
                             "those before them. The children run with "
                             f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}: with glibc's default "
                             "(a threshold that rises as large blocks are freed) freed "
                             "activations stay resident and RSS measures the heap's "
                             "fragmentation more than what training needs",
                             f"step time: all configurations in one process, stepped in turn "
                             f"({args.warmup} untimed round, then the median of {args.steps}); "
                             "the 2 CPU cores were shared with other work (load average around "
                             "9), so the ratios matter more than the absolute times"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
