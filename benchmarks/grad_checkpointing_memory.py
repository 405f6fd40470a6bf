"""Peak memory of one training step (forward + backward) of a big ViT with and without
gradient checkpointing (`model.set_grad_checkpointing`, `--grad-checkpointing`), on the same
batch and weights, with the loss and gradients compared.

    python benchmarks/grad_checkpointing_memory.py                    # ViT-L/16, batch 8, CPU
    python benchmarks/grad_checkpointing_memory.py --model vit_huge_patch14_224 --batch-size 4

Issue 13's target: at least 40% less peak memory with checkpointing. Recorded in RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from results_writer import add_options, table, write_section

import vitkit
from vitkit.bench.throughput import machine_description
from vitkit.bench.timing import PeakMemory


def one_step(model, images, checkpointing: bool, device) -> tuple[float, float, float, dict]:
    """(peak MiB above the weights, seconds, loss, gradients) of one forward + backward."""
    model.set_grad_checkpointing(checkpointing)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    start = time.perf_counter()
    with PeakMemory(device) as peak:
        loss = model(images).float().logsumexp(1).mean()
        loss.backward()
    seconds = time.perf_counter() - start
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return peak.peak_bytes / 2**20, seconds, float(loss), grads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_large_patch16_224")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_options(parser)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = vitkit.create_model(args.model).to(device).train()
    images = torch.randn(args.batch_size, 3, *model.config.img_size, device=device)
    plain = one_step(model, images, False, device)
    saved = one_step(model, images, True, device)
    worst = max(float((saved[3][n] - g).abs().max()) for n, g in plain[3].items())
    scale = max(float(g.abs().max()) for g in plain[3].values())
    body = table(
        ["model", "batch", "peak MiB", "with checkpointing", "saved", "s", "s with",
         "loss diff", "max grad diff"],
        [[args.model, args.batch_size, f"{plain[0]:.0f}", f"{saved[0]:.0f}",
          f"{1 - saved[0] / plain[0]:.0%}", f"{plain[1]:.1f}", f"{saved[1]:.1f}",
          f"{abs(plain[2] - saved[2]):.1e}", f"{worst:.1e} (of {scale:.1e})"]], "llrrrrrrr")
    print(body)
    if not args.no_record:
        write_section(f"Gradient checkpointing, {args.model} at batch {args.batch_size} on "
                      f"{device.type} (benchmarks/grad_checkpointing_memory.py)", body,
                      path=args.results, machine=machine_description(device),
                      facts=["fp32, one forward + backward; peak memory allocated during the "
                             "step, above what was allocated before it (the weights)"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
