"""Training from shards larger than the memory budget, with bounded memory (issue 13).

Makes a folder of JPEG photos at 224x224 (CIFAR-10's training images, upscaled bicubically,
quality 90), writes it as shards with `vitkit shards`, then trains `vit_tiny_patch16_224` for
`--steps` steps at batch 64 from the shards under `/usr/bin/time -v` with a `--memory-budget`
a quarter (or less) of the decoded size, so the data is streamed and decoded by worker
processes. Reports the peak resident memory that `time -v` measures (the largest process) and
the peak of the summed proportional set size (PSS) of the trainer and its workers, sampled from
/proc, and records both in benchmarks/RESULTS.md with the date, the machine and the command.

    python benchmarks/stream_memory.py --cifar ../shared/data/cifar10-png.tar.gz \
        --work runs/stream --count 50000 --steps 200 --budget 1.5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from results_writer import add_options, table, write_section

TITLE = ("Data larger than memory: streamed shards with bounded memory "
         "(benchmarks/stream_memory.py)")


def _to_photo(job: tuple[str, str]) -> None:
    source, target = job
    with Image.open(source) as image:
        image.convert("RGB").resize((224, 224), Image.BICUBIC).save(target, quality=90)


def make_photos(cifar: Path, work: Path, count: int) -> Path:
    """`count` JPEGs at 224x224 under work/photos/train/<class>/ (kept when already there)."""
    photos = work / "photos" / "train"
    done = work / "photos" / ".complete"
    if done.exists():
        return photos.parent
    pngs = work / "cifar10"
    if not (pngs / "train").is_dir():
        with tarfile.open(cifar) as tar:
            tar.extractall(pngs, filter="data")
    root = next(p for p in [pngs, *pngs.iterdir()] if (p / "train").is_dir()) / "train"
    sources = sorted(root.glob("*/*.png"))[:count]
    jobs = []
    for source in sources:
        target = photos / source.parent.name / (source.stem + ".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((str(source), str(target)))
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_to_photo, jobs, chunksize=256))
    done.touch()
    return photos.parent


def tree_pss(pid: int) -> int:
    """Bytes of proportional set size summed over `pid` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            with open(f"/proc/{current}/smaps_rollup") as handle:
                total += sum(int(line.split()[1]) * 1024 for line in handle
                             if line.startswith("Pss:"))
        except OSError:
            pass
    return total


def train(shards: Path, work: Path, args: argparse.Namespace) -> dict:
    """The timed training run; returns what it measured."""
    index = json.loads((shards / "index.json").read_text())
    images = index["splits"]["train"]["count"]
    epochs = args.steps * args.batch / images
    out = work / "run"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "vitkit", "train", "--data",
               str(shards), "--model", "vit_tiny_patch16_224", "--batch-size", str(args.batch),
               "--epochs", f"{epochs:.6f}", "--memory-budget", str(args.budget), "--workers",
               str(args.workers), "--no-progress", "--log-every", "20", "--out", str(out)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_pss(process.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    sampler.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"training failed:\n{stderr[-3000:]}")
    max_rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))
    summary = json.loads(next(line for line in stdout.splitlines() if line.startswith("{")))
    how = next((line for line in (stdout + stderr).splitlines() if "streamed" in line), "")
    return {"command": " ".join(command[2:]), "images": images, "steps": summary["steps"],
            "wall_s": wall, "images_per_s": summary["images_per_s"],
            "max_rss_gib": max_rss_kb / 2**20, "peak_pss_gib": peak[0] / 2**30, "how": how,
            "decoded_gib": images * 3 * 224 * 224 / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=Path("../shared/data/cifar10-png.tar.gz"))
    parser.add_argument("--work", type=Path, default=Path("runs/stream"))
    parser.add_argument("--count", type=int, default=50000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--budget", type=float, default=1.5, help="--memory-budget in GiB")
    parser.add_argument("--workers", type=int, default=2)
    add_options(parser)
    parser.add_argument("--prepare-only", action="store_true",
                        help="make the photos and shards, do not train")
    args = parser.parse_args()
    photos = make_photos(args.cifar, args.work, args.count)
    shards = args.work / "shards"
    if not (shards / "index.json").exists():
        subprocess.run([sys.executable, "-m", "vitkit", "shards", "--data", str(photos),
                        "--out", str(shards), "--img-size", "224"], check=True)
    if args.prepare_only:
        return
    result = train(shards, args.work, args)
    body = table(
        ["JPEGs", "decoded GiB", "budget GiB", "steps", "minutes", "images/s",
         "max RSS GiB (`/usr/bin/time -v`, largest process)",
         f"peak PSS GiB, trainer + {args.workers} workers summed"],
        [[f"{result['images']:,}", f"{result['decoded_gib']:.2f}", args.budget,
          result["steps"], f"{result['wall_s'] / 60:.1f}", f"{result['images_per_s']:.1f}",
          f"**{result['max_rss_gib']:.2f}**", f"**{result['peak_pss_gib']:.2f}**"]])
    print(result["how"])
    print(body)
    if not args.no_record:
        write_section(TITLE, body, path=args.results,
                      facts=[f"trains with: `{result['command']}`", f"trainer: {result['how']}"])


if __name__ == "__main__":
    main()
