"""Is accuracy kept in bf16? Top-1 of a trained checkpoint on a test set in fp32 and in bf16
(vitkit's fast path: a frozen bf16 copy, `optimize_for_inference`), on the same images.

    python benchmarks/bf16_accuracy.py --checkpoint RUN/checkpoint --data /tmp/cifar10 [--limit N]

On CPUs without bf16 matrix units (AVX2 only) bf16 is emulated and ~100x slower than fp32;
--limit evaluates only the first N test images (both precisions on the same N).
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch

import vitkit
from vitkit.data import load_splits
from vitkit.infer import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    model = vitkit.create_model(None, pretrained=args.checkpoint).eval()
    splits = load_splits(args.data, in_chans=model.config.in_chans)
    test = splits.test or splits.val
    if args.limit:
        test = test.subset(torch.arange(min(args.limit, len(test))))
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        start = time.perf_counter()
        metrics = evaluate(model, test, batch_size=250, dtype=dtype)
        rows.append((str(dtype).replace("torch.", ""), metrics["top1"],
                     time.perf_counter() - start))
    print(f"{datetime.date.today()}, {len(test)} test images of {args.data}, {args.checkpoint}")
    for name, top1, seconds in rows:
        print(f"  {name:8s} top-1 {top1:.4f}  ({seconds:.0f} s)")
    print(f"  bf16 - fp32: {100 * (rows[1][1] - rows[0][1]):+.2f} points")


if __name__ == "__main__":
    main()
