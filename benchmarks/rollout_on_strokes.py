"""Does the demo's model attend to the strokes? The share of attention-rollout mass on inked
patches (mean pixel > 25% of full ink) of the 360 held-out digits, for the trained demo model,
the same architecture re-initialised, and uniform attention (the inked patches' share).

    vitkit demo --out runs/demo && python benchmarks/rollout_on_strokes.py runs/demo/checkpoint
"""

from __future__ import annotations

import argparse

import torch
from results_writer import add_options, table, write_section

import vitkit
from vitkit.analysis import attention_rollout
from vitkit.data import load_digits
from vitkit.infer.batches import model_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the checkpoint folder of `vitkit demo`")
    add_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    test = load_digits("test")
    trained = vitkit.create_model(None, pretrained=args.checkpoint).eval()
    torch.manual_seed(0)
    untrained = vitkit.create_model(None, pretrained=args.checkpoint).eval()
    for p in untrained.parameters():  # re-initialise every weight: same architecture, untrained
        if p.ndim > 1:
            torch.nn.init.trunc_normal_(p, std=0.02)
    ink = torch.nn.functional.avg_pool2d(test.images.float(), 2)[:, 0] > 0.25 * 255  # (B, 4, 4)
    rows = []
    for name, model in (("trained", trained), ("re-initialised", untrained)):
        roll = attention_rollout(model, model_inputs(model, test.images))
        roll = roll / roll.sum(dim=(1, 2), keepdim=True)
        rows.append([name, f"{float((roll * ink).sum(dim=(1, 2)).mean()):.3f}"])
    rows.append(["uniform attention", f"{float(ink.float().mean(dim=(1, 2)).mean()):.3f}"])
    body = table(["model", f"share of rollout mass on inked patches ({len(test)} digits)"],
                 rows, "lr")
    print(body)
    if not args.no_record:
        write_section("Attention rollout on the digit strokes (benchmarks/rollout_on_strokes.py)",
                      body, path=args.results)


if __name__ == "__main__":
    main()
