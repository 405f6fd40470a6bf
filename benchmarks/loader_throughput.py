"""Decoding speed from JPEG shards: 224x224 training crops per second per CPU core, read by
`ShardedImages` (positioned reads, Pillow's reduced-size DCT decoding, resize and centre
crop) from shards that `vitkit shards --img-size 256` wrote of photo-sized JPEGs.

    python benchmarks/loader_throughput.py                       # 2,000 generated 500x375 photos
    python benchmarks/loader_throughput.py --photos /path/to/jpegs --threads 1 2
    python benchmarks/loader_throughput.py --device cuda         # batched nvJPEG (decode_on)

Target (issue 13): >= 400 images/s per core. Recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from results_writer import add_options, table, write_section

from vitkit.bench.throughput import machine_description
from vitkit.data.folders import find_images
from vitkit.data.shards import ShardedImages, write_shards


def make_photos(folder: Path, count: int, size: tuple[int, int] = (500, 375)) -> list[str]:
    """Photo-like JPEGs (smooth random colour fields with detail, quality 90)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        noise = rng.integers(-12, 13, (size[1], size[0], 3))
        pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).filter(ImageFilter.SMOOTH).save(folder / f"{i}.jpg", quality=90)
    return find_images([folder])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=None, help="a folder of JPEGs (default: generated)")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cuda: decode on the GPU instead "
                        "(torchvision.io.decode_jpeg, batched), reported as threads 0")
    add_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        files = find_images([args.photos]) if args.photos else make_photos(work / "jpg",
                                                                          args.count)
        write_shards({"train": [(f, 0) for f in files]}, ["photo"], work / "shards", 256)
        rows = []
        for threads in ([0] if args.device != "cpu" else args.threads):
            data = ShardedImages(work / "shards", "train", 224, workers=max(threads, 1))
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))

            def batch(indices: torch.Tensor, data=data) -> torch.Tensor:
                if args.device == "cpu":
                    return data.images[indices]
                return data.decode_on(indices.tolist(), args.device)

            batch(order[:args.batch_size])  # warm-up (and the page cache)
            start = time.perf_counter()
            for begin in range(0, len(data), args.batch_size):
                batch(order[begin:begin + args.batch_size])
            if args.device != "cpu":
                torch.cuda.synchronize()
            rate = len(data) / (time.perf_counter() - start)
            rows.append([len(data), threads or args.device, f"{rate:.0f}",
                         f"{rate / max(threads, 1):.0f}"])
            print(f"{threads or args.device} threads: {rate:.0f} images/s", flush=True)
    body = table(["images", "threads", "images/s", "per thread"], rows, "rrrr")
    print(body)
    if not args.no_record:
        where = "" if args.device == "cpu" else f", decoded on {args.device}"
        write_section(f"Decoding from JPEG shards{where} (benchmarks/loader_throughput.py)",
                      body, path=args.results, machine=machine_description(args.device),
                      facts=[f"224x224 crops, random order, of {args.photos or 'generated 500x375'}"
                             " JPEGs (q90) that `write_shards` shrank to a 256 px shorter side"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
