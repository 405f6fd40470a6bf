"""Trainer efficiency: `vitkit.train`'s steady images/s on CIFAR-10 (real batches through the
recipe's batched augmentation, EMA, clipping, logging) divided by a bare training step of the
same model, batch, precision and compile setting (a fixed batch: forward, backward, AdamW),
measured in the same process, interleaved.

    python benchmarks/trainer_efficiency.py                      # tiny ViT and the CIFAR preset
    python benchmarks/trainer_efficiency.py --models tiny --steps 60 --device cuda --compile on

Targets (issue 12): >= 0.85 for the tiny ViT and >= 0.95 for vit_cifar_patch4_32 on the CPU,
>= 0.90 on a GPU. Recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from results_writer import add_options, table, write_section

import vitkit
from vitkit.bench.throughput import machine_description
from vitkit.data import load_splits
from vitkit.train import TrainRun, get_recipe, train
from vitkit.train.precision import training_dtype

TARBALL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-png.tar.gz"
MODELS = {
    "tiny": ("vit_cifar_patch4_32", dict(depth=2, embed_dim=64, num_heads=2, mlp_dim=128)),
    "cifar": ("vit_cifar_patch4_32", {}),
}


def cifar10(folder: Path) -> Path:
    if not (folder / "train").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-xzf", str(TARBALL), "-C", str(folder)], check=True)
    return folder


def bare_rate(model, batch: int, dtype, device, compiled: bool, steps: int) -> float:
    """Images/s of forward + backward + fused AdamW on one fixed batch (after warm-up)."""
    config = model.config
    images = torch.randn(batch, config.in_chans, *config.img_size, device=device)
    labels = torch.randint(0, config.num_classes, (batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    net = torch.compile(model) if compiled else model

    def step() -> None:
        with torch.autocast(device.type, torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = F.cross_entropy(net(images).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def trainer_rate(name: str, overrides: dict, data, batch: int, precision: str, device,
                 compiled: bool, steps: int, out: Path) -> float:
    """The trainer's images/s over its logged windows, the first (warm-up) left out."""
    torch.manual_seed(0)
    model = vitkit.create_model(name, num_classes=10, **overrides)
    epochs = (steps + 1) / (len(data) // batch)
    recipe = get_recipe("small-data", batch_size=batch, epochs=epochs, warmup_epochs=0)
    train(TrainRun(model=model, train_set=data, recipe=recipe, out_dir=out, progress=False,
                   precision=precision, device=str(device), compile=compiled, log_every=10))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [row["images_per_s"] for row in rows if "images_per_s" in row][1:]
    return statistics.median(rates)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--data", default="data/cifar10",
                        help="CIFAR-10 image folders (extracted from ../shared/data if absent)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60, help="trainer steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repeats")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--compile", choices=("on", "off"), default="off")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_options(parser)
    args = parser.parse_args()

    device = torch.device(args.device)
    compiled = args.compile == "on"
    data = load_splits(str(cifar10(Path(args.data))), progress=False).train
    rows = []
    for key in args.models:
        name, overrides = MODELS[key]
        torch.manual_seed(0)
        model = vitkit.create_model(name, num_classes=10, **overrides).to(device)
        dtype = training_dtype(model, args.precision, device, args.batch_size)
        precision = "bf16" if dtype == torch.bfloat16 else "fp32"
        bare, trained = [], []
        for _ in range(args.rounds):
            bare.append(bare_rate(model, args.batch_size, dtype, device, compiled,
                                  args.steps // 2))
            with tempfile.TemporaryDirectory() as out:
                trained.append(trainer_rate(name, overrides, data, args.batch_size, precision,
                                            device, compiled, args.steps, Path(out)))
        ratio = statistics.median(trained) / statistics.median(bare)
        shown = f"{key} ({name} {json.dumps(overrides) if overrides else ''})".replace(" )", ")")
        rows.append([shown, args.batch_size, precision, f"{statistics.median(bare):.0f}",
                     f"{statistics.median(trained):.0f}", f"**{ratio:.3f}**"])
        print(f"{shown}: trainer / bare step = {ratio:.3f}", flush=True)
    body = table(["model", "batch", "precision", "bare step img/s", "trainer img/s", "ratio"],
                 rows, "lrlrrr")
    print(body)
    if not args.no_record:
        write_section(f"Trainer efficiency on {device.type}, compile {args.compile} "
                      "(benchmarks/trainer_efficiency.py)", body, path=args.results,
                      machine=machine_description(device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
