"""Does the demo's model attend to the strokes? The share of attention-rollout mass on inked
patches (mean pixel > 25% of full ink) of the 360 held-out digits, for the trained demo model,
the same architecture re-initialised, and uniform attention (the inked patches' share).

    vitkit demo --out demo_out && python benchmarks/rollout_on_strokes.py demo_out/checkpoint
"""

import sys

import torch

import vitkit
from vitkit.analysis import attention_rollout
from vitkit.data import load_digits
from vitkit.infer.batches import model_inputs

torch.set_num_threads(1)
test = load_digits("test")
trained = vitkit.create_model(None, pretrained=sys.argv[1]).eval()
torch.manual_seed(0)
untrained = vitkit.create_model(None, pretrained=sys.argv[1]).eval()
for p in untrained.parameters():  # re-initialise every weight: same architecture, untrained
    if p.ndim > 1:
        torch.nn.init.trunc_normal_(p, std=0.02)
images = test.images.float()
ink = torch.nn.functional.avg_pool2d(images, 2)[:, 0] > 0.25 * 255  # (B, 4, 4) inked patches
for name, model in (("trained", trained), ("untrained", untrained)):
    roll = attention_rollout(model, model_inputs(model, test.images))
    roll = roll / roll.sum(dim=(1, 2), keepdim=True)
    print(name, round(float((roll * ink).sum(dim=(1, 2)).mean()), 3))
print("uniform", round(float(ink.float().mean(dim=(1, 2)).mean()), 3))
