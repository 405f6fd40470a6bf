"""Decode a list of (path, label) files into one uint8 tensor dataset: a thread pool over the
cores, a tqdm bar, every image resized to one size, and undecodable files skipped and listed."""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models import to_2tuple
from .cache import cache_key, load_cached, store
from .dataset import ImageTensorDataset
from .images import ImageDecodeError, decode_image, image_size, to_tensor
from .transforms import resize_crop

log = logging.getLogger("vitkit")

_CHUNK = 256  # files per pool task: large enough to amortise the hand-off


def most_common_size(paths: Sequence[str]) -> tuple[int, int]:
    """The most frequent upright (height, width) among the files (read from headers only)."""
    counts = Counter(size for size in map(image_size, paths) if size is not None)
    if not counts:
        reason = "no files" if not paths else _why_unreadable(paths[0])
        raise ValueError(_none_decoded(paths, paths[0] if paths else "", reason))
    # Ties go to the larger area, then to the first seen, so the choice is deterministic.
    return max(counts.items(), key=lambda item: (item[1], item[0][0] * item[0][1]))[0]


def _why_unreadable(path: str) -> str:
    try:
        decode_image(path)
    except ImageDecodeError as error:
        return error.reason
    return "its header could not be read"


def _none_decoded(paths: Sequence[str], first: str, reason: str) -> str:
    """The message for a set of files none of which decodes: where, the first reason, what to do."""
    try:
        where = os.path.commonpath([os.path.abspath(os.path.dirname(p)) for p in paths])
    except ValueError:  # no paths, or paths on different drives
        where = "the data"
    return (f"none of the {len(paths)} image files under {where} could be decoded (first: "
            f"{first}: {reason}); check the data folder, or replace or remove the broken files")


def load_image(path: str | os.PathLike, size: int | Sequence[int], mode: str = "RGB",
               crop_pct: float = 1.0, interpolation: str = "bicubic") -> torch.Tensor:
    """One file as uint8 (C, H, W) pixels at `size`: decoded upright in `mode`, the shorter
    side resized to size / crop_pct, centre-cropped (`resize_crop`). Every command reads
    image files through this, so the same file gives the same pixels everywhere. Large
    JPEGs decode at a reduced DCT scale, never below what the resize needs."""
    size = to_2tuple(size)
    needed = tuple(math.ceil(side / crop_pct) for side in size)
    pixels = to_tensor(decode_image(path, mode, min_size=needed), mode)
    return resize_crop(pixels, size, crop_pct, interpolation)


def _decode_chunk(paths: Sequence[str], size: tuple[int, int], mode: str, crop_pct: float,
                  interpolation: str) -> list[torch.Tensor | str]:
    out: list[torch.Tensor | str] = []
    for path in paths:
        try:
            out.append(load_image(path, size, mode, crop_pct, interpolation))
        except ImageDecodeError as error:
            out.append(error.reason)
        except MemoryError:
            out.append("out of memory while decoding")
    return out


def default_workers() -> int:
    """Threads to decode with: the cores this process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def decode_files(
    items: Sequence[tuple[str, int]],
    classes: list[str],
    size: tuple[int, int],
    mode: str,
    progress: bool = True,
    workers: int | None = None,
    description: str = "decoding",
    crop_pct: float = 1.0,
    interpolation: str = "bicubic",
) -> ImageTensorDataset:
    """Decode every file with `load_image` into uint8 (N, C, H, W); bad files go to `skipped`
    with the reason."""
    channels = 1 if mode == "L" else 3
    height, width = size
    buffer = torch.empty((len(items), channels, height, width), dtype=torch.uint8)
    paths = [path for path, _ in items]
    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    kept = np.zeros(len(items), dtype=bool)
    skipped: list[tuple[str, str]] = []
    bar = tqdm(total=len(paths), desc=description, unit="img", disable=not progress,
               leave=False)
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        results = pool.map(_decode_chunk, chunks, [size] * len(chunks), [mode] * len(chunks),
                           [crop_pct] * len(chunks), [interpolation] * len(chunks))
        index = 0
        for chunk_results in results:
            for result in chunk_results:
                if isinstance(result, str):
                    skipped.append((paths[index], result))
                else:
                    buffer[index] = result
                    kept[index] = True
                index += 1
            bar.update(len(chunk_results))
    bar.close()
    labels = np.array([label for _, label in items], dtype=np.int64)
    keep = torch.from_numpy(kept)
    images = buffer if bool(keep.all()) else buffer[keep]
    return ImageTensorDataset(images, torch.from_numpy(labels[kept]), list(classes), skipped)


def report_skipped(dataset: ImageTensorDataset, where: str) -> None:
    """Log a one-paragraph warning listing (up to 10 of) the files that were skipped."""
    if not dataset.skipped:
        return
    shown = "\n".join(f"  {path}: {reason}" for path, reason in dataset.skipped[:10])
    more = len(dataset.skipped) - 10
    tail = f"\n  ... and {more} more (see dataset.skipped)" if more > 0 else ""
    log.warning("%s: skipped %d of %d files that could not be decoded:\n%s%s", where,
                len(dataset.skipped), len(dataset) + len(dataset.skipped), shown, tail)


def decode_cached(
    items: Sequence[tuple[str, int]],
    classes: list[str],
    size: int | tuple[int, int] | None,
    mode: str,
    cache_dir: Path | None,
    progress: bool = True,
    description: str = "decoding",
    crop_pct: float = 1.0,
    interpolation: str = "bicubic",
) -> ImageTensorDataset:
    """`decode_files` through the memory/disk cache; `size` None means the most common size."""
    if not items:
        raise ValueError("no image files to decode")
    settings = {"size": list(to_2tuple(size)) if size is not None else None, "mode": mode,
                "crop_pct": crop_pct, "interpolation": interpolation}
    key = cache_key(list(items), classes, settings)
    cached = load_cached(key, cache_dir)
    if cached is not None:
        log.info("%s: %d images from the cache (%s)", description, len(cached), key)
        return cached
    target = to_2tuple(size) if size is not None else most_common_size([p for p, _ in items])
    dataset = decode_files(items, classes, target, mode, progress=progress,
                           description=description, crop_pct=crop_pct, interpolation=interpolation)
    if len(dataset) == 0:
        first, reason = dataset.skipped[0]
        raise ValueError(_none_decoded([path for path, _ in items], first, reason))
    store(key, dataset, cache_dir, {**settings, "size": list(target), "what": description})
    return dataset
