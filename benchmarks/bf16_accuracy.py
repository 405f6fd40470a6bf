"""Is accuracy kept in bf16? Top-1 of a trained checkpoint on a test set in fp32 and in bf16
(vitkit's fast path: a frozen bf16 copy, `optimize_for_inference`), on the same images.

    python benchmarks/bf16_accuracy.py --checkpoint RUN/checkpoint --data data/cifar10 [--limit N]

On CPUs without bf16 matrix units (AVX2 only) bf16 is emulated and ~100x slower than fp32;
--limit evaluates only the first N test images (both precisions on the same N).
"""

from __future__ import annotations

import argparse
import time

import torch
from results_writer import add_options, table, write_section

import vitkit
from vitkit.data import load_splits
from vitkit.infer import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=None)
    add_options(parser)
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
        rows.append([str(dtype).replace("torch.", "").replace("float32", "fp32")
                     .replace("bfloat16", "bf16"), f"{metrics['top1']:.4f}",
                     f"{time.perf_counter() - start:.0f}"])
    delta = 100 * (float(rows[1][1]) - float(rows[0][1]))
    body = (table(["precision", f"test top-1 ({len(test):,} images)", "seconds"], rows, "lrr")
            + f"\n\nbf16 - fp32: {delta:+.2f} points (target: within 0.1).")
    print(body)
    if not args.no_record:
        write_section("bf16 vs fp32 accuracy (benchmarks/bf16_accuracy.py)", body,
                      path=args.results, facts=["bf16 = `optimize_for_inference` bf16 weights"])


if __name__ == "__main__":
    main()
