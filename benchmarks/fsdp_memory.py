"""Memory per process of data-parallel (DDP) against fully sharded (FSDP2, `--fsdp`) training
of a big ViT on the CPU, the trainer's own sharding (`vitkit.train.sharding.shard_model`) and
optimizer (`build_optimizer`, AdamW). Each rank runs a few steps on random images; the table
gives every rank's peak resident memory (getrusage) and the bytes of parameters, gradients and
AdamW moments it holds.

    torchrun --standalone --nproc-per-node 2 benchmarks/fsdp_memory.py            # ViT-L/16, DDP
    torchrun --standalone --nproc-per-node 2 benchmarks/fsdp_memory.py --fsdp
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from results_writer import add_options, command_line, table, write_section

from vitkit import create_model
from vitkit.train import get_recipe
from vitkit.train.distributed import init_from_env
from vitkit.train.optim import build_optimizer
from vitkit.train.sharding import shard_model


def local_bytes(tensors) -> int:
    """Bytes this rank holds of `tensors` (a DTensor counts its local shard)."""
    total = 0
    for tensor in tensors:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        total += local.numel() * local.element_size()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_large_patch16_224")
    parser.add_argument("--batch", type=int, default=4, help="global batch")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--fsdp", action="store_true")
    add_options(parser)
    args = parser.parse_args()
    info = init_from_env(torch.device("cpu"))
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10)
    if args.fsdp:
        shard_model(model, info, torch.device("cpu"))
        net = model
    else:
        net = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = build_optimizer(model, get_recipe("small-data"))
    size = model.config.img_size
    local = args.batch // info.world_size
    started = time.perf_counter()
    for _ in range(args.steps):
        images = torch.randn(local, 3, *size)
        loss = F.cross_entropy(net(images), torch.randint(0, 10, (local,)))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # keep the gradients: they count
    seconds = (time.perf_counter() - started) / args.steps
    params = list(model.parameters())
    held = torch.tensor([
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # KiB -> GiB
        local_bytes(params) / 2**30, local_bytes(p.grad for p in params) / 2**30,
        local_bytes(t for state in optimizer.state.values() for t in state.values()
                    if torch.is_tensor(t) and t.ndim) / 2**30])
    rows = [torch.zeros_like(held) for _ in range(info.world_size)]
    dist.all_gather(rows, held)
    if info.is_main:
        record(args, info.world_size, seconds, [row.tolist() for row in rows])
    dist.destroy_process_group()


def record(args: argparse.Namespace, world_size: int, seconds: float,
           rows: list[list[float]]) -> None:
    """Print each rank's memory and record the run as a RESULTS.md section."""
    how = "FSDP2" if args.fsdp else "DDP"
    body = table(["rank", "peak RSS GiB", "parameters GiB", "gradients GiB",
                  "AdamW moments GiB"],
                 [[rank, *(f"{v:.2f}" for v in row)] for rank, row in enumerate(rows)], "rrrrr")
    threads = os.environ.get("OMP_NUM_THREADS", "?")
    facts = [f"{world_size} processes (gloo) x {threads} threads, global batch {args.batch}, "
             f"{seconds:.1f} s/step, random images, AdamW, gradients kept"]
    print(facts[0])
    print(body)
    if not args.no_record:
        launcher = f"torchrun --standalone --nproc-per-node {world_size}"
        write_section(f"Fully sharded training, memory per process: {args.model}, {how} "
                      "(benchmarks/fsdp_memory.py)", body, path=args.results, facts=facts,
                      command=command_line(launcher=launcher))


if __name__ == "__main__":
    main()
