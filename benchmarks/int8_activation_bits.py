"""int8 with 8-bit and with 7-bit activations, on this CPU's own int8 kernels and with oneDNN and
PyTorch capped at AVX2 (no VNNI): how far each lands from the fp32 model's logits, and top-1.

Without VNNI, int8 matrix kernels add pairs of u8 x s8 products in 16 bits (AVX2's
vpmaddubsw), which saturate when activations use all 8 bits; torchao advises reduce_range
(7-bit activations) there. vitkit takes 7 bits only where the kernels have no VNNI or
AMX-INT8 (`vitkit.infer.int8.int8_reduce_range`); this measures whether that is right.

    python benchmarks/int8_activation_bits.py --checkpoint runs/.../checkpoint --data data/cifar10

Each cap runs in a process of its own (oneDNN reads its cap once); the cap is an emulation of
an AVX2-only CPU, not one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from inference_paths import checkpoint_on_test
from results_writer import add_options, table, write_section

CAPS = {"none": {}, "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}


def measure(checkpoint: Path, data: Path, images: int) -> list[dict]:
    """fp32 logits against int8's with 8- and 7-bit activations (fp32 between the layers,
    so only the bits differ), on the first `images` test images, calibrated on 512 train."""
    import torch

    from vitkit.infer.batches import model_inputs
    from vitkit.infer.int8 import int8_reduce_range, quantize_int8

    model, test, pixels = checkpoint_on_test(checkpoint, data)
    inputs = model_inputs(model, test.images[:images])
    labels = test.targets[:images]
    batches = range(0, len(inputs), 256)
    rows = []
    with torch.no_grad():
        reference = torch.cat([model(inputs[i:i + 256]) for i in batches])
        for reduce_range in (False, True):
            quantized = quantize_int8(model, pixels, activations=torch.float32,
                                      reduce_range=reduce_range)
            logits = torch.cat([quantized(inputs[i:i + 256]) for i in batches])
            gap = (logits - reference).abs()
            rows.append({"bits": 7 if reduce_range else 8, "default": reduce_range ==
                         int8_reduce_range(), "mean": gap.mean().item(), "max": gap.max().item(),
                         "agree": (logits.argmax(1) == reference.argmax(1)).float().mean().item(),
                         "top1": (logits.argmax(1) == labels).float().mean().item(),
                         "fp32_top1": (reference.argmax(1) == labels).float().mean().item()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="image-folder tree with test/")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    add_options(parser)
    args = parser.parse_args()
    if args.child:
        print("ROWS " + json.dumps(measure(args.checkpoint, args.data, args.images)))
        return
    rows = []
    for cap, env in CAPS.items():
        out = subprocess.run([sys.executable, __file__, "--child", "--checkpoint",
                              str(args.checkpoint), "--data", str(args.data), "--images",
                              str(args.images)], env={**os.environ, **env}, check=True,
                             capture_output=True, text=True).stdout
        for row in json.loads(out.split("ROWS ", 1)[1]):
            rows.append([f"capped at {cap}" if env else "none", row["bits"],
                         "yes" if row["default"] else "", f"{row['mean']:.4f}",
                         f"{row['max']:.3f}", f"{100 * row['agree']:.2f}",
                         f"{100 * row['top1']:.2f}", f"{100 * row['fp32_top1']:.2f}"])
            print(rows[-1], flush=True)
    body = (f"{args.checkpoint} on the first {args.images} {args.data.name} test images, "
            "fp32 between the int8 layers:\n\n"
            + table(["instruction-set cap", "activation bits", "vitkit's default here",
                     "mean logit gap to fp32", "max logit gap", "argmax = fp32 %",
                     "top-1 %", "fp32 top-1 %"], rows, "lrlrrrrr"))
    print(body)
    if not args.no_record:
        write_section("int8 activations, 8 bits against 7, with and without VNNI "
                      "(benchmarks/int8_activation_bits.py)", body, path=args.results)


if __name__ == "__main__":
    main()
