"""LoRA against full fine-tuning of ViT-B/16: trainable parameters, peak resident memory and
median step time of the same training step (forward, cross-entropy, backward, AdamW step),
each configuration in a fresh process so that peaks don't mix.

    python benchmarks/lora_memory.py                          # ViT-B/16 at 224, batch 8, CPU
    python benchmarks/lora_memory.py --ranks 8 16 --steps 5 --batch-size 8

The step is the trainer's (`vitkit.train.lora.add_lora`, `vitkit.train.optim.build_optimizer`
with the recipe's parameter groups), in fp32, on random images and labels (the numbers don't
depend on the weights). Recorded in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
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


def _rss_gib() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(model_name: str, rank: int, batch: int, steps: int, warmup: int) -> dict:
    """Build the model (with LoRA of `rank`, 0: full fine-tuning), run warmup + steps
    training steps; the trainable count, peak RSS before and after training, step times."""
    import peft  # noqa: F401 - in every configuration, so that the runtimes are the same size

    torch.manual_seed(0)
    model = vitkit.create_model(model_name, num_classes=10).train()
    recipe = get_recipe("paper-finetune", optimizer="adamw", weight_decay=0.05, lora_rank=rank)
    if rank:
        add_lora(model, recipe)
    optimizer = build_optimizer(model, recipe)
    set_lr(optimizer, 1e-4)
    images = torch.randn(batch, 3, *model.config.img_size)
    labels = torch.randint(0, 10, (batch,))
    before = _rss_gib()
    seconds = []
    with PeakMemory(torch.device("cpu")) as peak:
        for _ in range(warmup + steps):
            start = time.perf_counter()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds.append(time.perf_counter() - start)
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters()),
            "rss_model_gib": before, "rss_peak_gib": _rss_gib(),
            "allocated_gib": peak.peak_bytes / 2**30,
            "step_s": statistics.median(seconds[warmup:])}


def in_subprocess(args: argparse.Namespace, rank: int) -> dict:
    """`measure` in a fresh Python process (its own peak RSS)."""
    command = [sys.executable, __file__, "--child", str(rank), "--model", args.model,
               "--batch-size", str(args.batch_size), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--no-record"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    add_options(parser)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.model, args.child, args.batch_size, args.steps,
                                 args.warmup)))
        return 0
    results = {rank: in_subprocess(args, rank) for rank in [0, *args.ranks]}
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
                      facts=[f"fp32, 10 classes, AdamW; per configuration a fresh process, "
                             f"{args.warmup} untimed then {args.steps} timed steps (forward, "
                             "cross-entropy, backward, optimizer step); LoRA (PEFT) on every "
                             "block's qkv, proj, fc1, fc2 with the head trainable",
                             "peak RSS: the process's maximum resident memory (getrusage), the "
                             "model's weights and the Python/PyTorch/PEFT runtime included "
                             "(peft imported in every configuration); added by training: the "
                             "peak minus the RSS after building the model and optimizer "
                             f"({full['rss_model_gib']:.2f} GiB for full fine-tuning): "
                             "activations, gradients, AdamW moments",
                             "peak allocated in training: glibc's bytes in use (mallinfo2, "
                             "sampled every 5 ms by vitkit.bench.timing.PeakMemory) during the "
                             "steps, above those in use before them; unlike RSS it does not "
                             "count memory the allocator keeps after freeing it",
                             "the 2 CPU cores were shared with other work: the ratios matter "
                             "more than the absolute times"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
