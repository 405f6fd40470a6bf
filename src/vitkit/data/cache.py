"""The decoded-image cache: a uint8 tensor per file list, kept in memory and on disk as
safetensors + JSON (no pickle), keyed by the files' names, sizes and mtimes and the decode
settings, so a changed file or setting decodes afresh."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from ..files import atomic_write, write_json
from .dataset import ImageTensorDataset

log = logging.getLogger("vitkit")

CACHE_VERSION = 2  # 2: pixels resized by torchvision (`load_image`), not by Pillow
_MEMORY: dict[str, ImageTensorDataset] = {}


def default_cache_dir() -> Path:
    """$VITKIT_CACHE/datasets when that is set, else ~/.cache/vitkit/datasets."""
    root = os.environ.get("VITKIT_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "vitkit"
    return base / "datasets"


def cache_key(items: list[tuple[str, int]], classes: list[str], settings: dict[str, Any]) -> str:
    """A hash of the (path, label) list with each file's size and mtime, plus the settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"v": CACHE_VERSION, "classes": classes, **settings},
                             sort_keys=True).encode())
    for path, label in items:
        try:
            stat = os.stat(path)
            signature = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            signature = "missing"
        digest.update(f"{os.path.abspath(path)}\0{label}\0{signature}\n".encode())
    return digest.hexdigest()[:32]


def clear_memory_cache() -> None:
    """Forget the in-memory copies (the disk cache stays)."""
    _MEMORY.clear()


def load_cached(key: str, cache_dir: Path | None) -> ImageTensorDataset | None:
    """The dataset stored under `key` in memory or in `cache_dir`, or None."""
    if key in _MEMORY:
        return _MEMORY[key]
    if cache_dir is None:
        return None
    tensors_path, meta_path = cache_dir / f"{key}.safetensors", cache_dir / f"{key}.json"
    if not (tensors_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(tensors_path))
        dataset = ImageTensorDataset(
            images=tensors["images"],
            targets=tensors["targets"].long(),
            classes=list(meta["classes"]),
            skipped=[(str(p), str(r)) for p, r in meta["skipped"]],
        )
        if meta.get("count") != len(dataset):
            raise ValueError("image count differs from the JSON")
    except Exception as error:  # noqa: BLE001 - a bad cache entry is rebuilt, never fatal
        log.warning("ignoring a damaged dataset cache entry %s (%s); decoding again",
                    tensors_path, error)
        return None
    _MEMORY[key] = dataset
    return dataset


def store(key: str, dataset: ImageTensorDataset, cache_dir: Path | None,
          description: dict[str, Any]) -> None:
    """Keep `dataset` in memory and, when `cache_dir` is given, write it there atomically."""
    _MEMORY[key] = dataset
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tensors = {"images": dataset.images.contiguous(), "targets": dataset.targets.contiguous()}
        meta = {"version": CACHE_VERSION, "count": len(dataset), "classes": dataset.classes,
                "skipped": [list(item) for item in dataset.skipped], **description}
        # The tensors go first: a JSON file only ever sits beside complete tensors.
        atomic_write(cache_dir / f"{key}.safetensors",
                     lambda tmp: save_file(tensors, tmp, {"vitkit_cache": str(CACHE_VERSION)}))
        write_json(cache_dir / f"{key}.json", meta, indent=1)
    except OSError as error:
        log.warning("could not write the dataset cache to %s (%s); continuing without it",
                    cache_dir, error)

