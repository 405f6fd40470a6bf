"""The serving benchmarks' fixture, made the same way every time: a 0.98M-parameter 32 px ViT
with random weights (`vit_cifar_mini_patch4_32` at depth 13, seeded) saved as a vitkit
checkpoint, and 200 PNGs of 32x32 noise. Serving cost does not depend on what the weights
learned, and nothing here needs a download.

    python benchmarks/serve_fixture.py [--out runs/serve-fixture]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

FIXTURE = Path(__file__).resolve().parent.parent / "runs" / "serve-fixture"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]


def make_fixture(out: str | Path = FIXTURE, images: int = 200,
                 seed: int = 0) -> tuple[Path, Path]:
    """(checkpoint folder, image folder) under `out`, made once and reused afterwards."""
    from vitkit import create_model, save_pretrained

    out = Path(out)
    checkpoint, folder = out / "ckpt", out / "images"
    if not (checkpoint / "config.json").exists():
        torch.manual_seed(seed)
        model = create_model("vit_cifar_mini_patch4_32", depth=13, num_classes=len(CLASSES))
        save_pretrained(model, checkpoint, class_names=CLASSES)
    if len(list(folder.glob("*.png"))) < images:
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        for index in range(images):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
    return checkpoint, folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(FIXTURE))
    checkpoint, folder = make_fixture(parser.parse_args().out)
    print(f"checkpoint: {checkpoint}\nimages: {folder}")


if __name__ == "__main__":
    main()
