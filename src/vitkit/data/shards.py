"""Datasets larger than memory: images kept encoded in WebDataset-style `.tar` shards
(`KEY.jpg`/`.png` + `KEY.cls`), with a table of every member's offset beside them, so any
sample can be read by index without unpacking. Decoding happens per batch, in worker processes
or threads, or on the GPU (nvJPEG through torchvision), as training asks for it; the batch
order stays a pure function of (seed, step), so a resumed run reads exactly the batches an
uninterrupted one would.

    DIR/index.json              classes, image size bound, per split: count and shards
    DIR/{split}-000000.tar      the encoded images and their labels
    DIR/{split}.members.npy     (count, 4) int64: shard, byte offset, byte size, label
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..files import atomic_write, write_json
from ..models import to_2tuple
from .decode import default_workers
from .images import ImageDecodeError, decode_image, to_mode, to_tensor
from .transforms import resize_crop

INDEX_NAME = "index.json"
FORMAT = "vitkit-shards"


def is_shard_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder written by `write_shards`."""
    index = Path(path) / INDEX_NAME
    if not index.is_file():
        return False
    try:
        return json.loads(index.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


# -- writing ---------------------------------------------------------------------------------
def encode(path: str, max_side: int | None) -> tuple[bytes, str]:
    """A file's bytes for a shard and its extension: as they are when the image needs no
    shrinking (after checking that it decodes), else shrunk so its shorter side is
    `max_side` and re-encoded (JPEG q90 for JPEGs, PNG otherwise)."""
    image = decode_image(path)  # raises ImageDecodeError with the reason
    with Image.open(path) as original:
        fmt = (original.format or "PNG").upper()
    if max_side is None or min(image.size) <= max_side:
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}.get(fmt)
        if ext is not None:
            return Path(path).read_bytes(), ext
    if max_side is not None and min(image.size) > max_side:
        scale = max_side / min(image.size)
        size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=90)
        return buffer.getvalue(), "jpg"
    image.save(buffer, "PNG")
    return buffer.getvalue(), "png"


def write_shards(splits: dict[str, list[tuple[str, int]]], classes: list[str], out: Path,
                 max_side: int | None = None, shard_bytes: int = 256 * 2**20,
                 workers: int | None = None) -> dict:
    """Write each split's (path, label) items as shards in `out`; returns the index. Files
    that do not decode are skipped and listed in the index with the reason."""
    out.mkdir(parents=True, exist_ok=True)
    index: dict = {"format": FORMAT, "version": 1, "classes": list(classes),
                   "max_side": max_side, "splits": {}, "skipped": []}
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        for split, items in splits.items():
            encoded = pool.map(lambda item: _try_encode(item[0], max_side), items)
            index["splits"][split] = _write_split(out, split, items, encoded, shard_bytes,
                                                  index["skipped"])
    write_json(out / INDEX_NAME, index)
    return index


def _try_encode(path: str | torch.Tensor, max_side: int | None) -> tuple[bytes, str] | str:
    try:
        if isinstance(path, torch.Tensor):  # an image of a built-in dataset: uint8 (C, H, W)
            array = path.permute(1, 2, 0).numpy()
            image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            return buffer.getvalue(), "png"
        return encode(path, max_side)
    except ImageDecodeError as error:
        return error.reason
    except (OSError, ValueError, MemoryError) as error:
        return f"could not encode: {error}"


def _write_split(out: Path, split: str, items: Sequence[tuple[str, int]],
                 encoded: Iterator[tuple[bytes, str] | str], shard_bytes: int,
                 skipped: list) -> dict:
    """One split's shards and member table."""
    members: list[tuple[int, int, int, int]] = []
    shards: list[dict] = []
    tar = None
    for (path, label), result in zip(items, encoded, strict=True):
        if isinstance(result, str):
            skipped.append([str(path), result])
            continue
        data, ext = result
        if tar is None or tar.fileobj.tell() >= shard_bytes:
            if tar is not None:
                tar.close()
            name = f"{split}-{len(shards):06d}.tar"
            shards.append({"file": name, "count": 0})
            tar = tarfile.open(out / name, "w", format=tarfile.USTAR_FORMAT)
        key = f"{len(members):09d}"
        offset = _add(tar, f"{key}.{ext}", data)
        _add(tar, f"{key}.cls", str(label).encode())
        members.append((len(shards) - 1, offset, len(data), label))
        shards[-1]["count"] += 1
    if tar is not None:
        tar.close()
    for shard in shards:
        shard["bytes"] = (out / shard["file"]).stat().st_size
    table = np.array(members, dtype=np.int64).reshape(-1, 4)
    atomic_write(out / f"{split}.members.npy", lambda tmp: _save_npy(tmp, table))
    counts = np.bincount(table[:, 3], minlength=0).tolist() if len(table) else []
    return {"count": len(members), "shards": shards, "class_counts": counts}


def _save_npy(path: str, table: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, table)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Append one member; returns the byte offset of its data in the tar file."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    offset = tar.fileobj.tell() + 512  # a USTAR header is one 512-byte block
    tar.addfile(info, io.BytesIO(data))
    return offset


# -- reading ---------------------------------------------------------------------------------
class ShardedImages:
    """A split of a shard folder with the interface of `ImageTensorDataset` (`images`,
    `targets`, `classes`, `skipped`), where `images[indices]` reads and decodes just those
    samples: uint8 (B, C, H, W) at `size`, shorter side resized and centre-cropped as
    `load_image` does."""

    def __init__(self, folder: str | os.PathLike, split: str, size: int | Sequence[int],
                 mode: str = "RGB", workers: int | None = None, crop_pct: float = 1.0,
                 interpolation: str = "bicubic") -> None:
        self.folder = Path(folder)
        index = json.loads((self.folder / INDEX_NAME).read_text())
        if split not in index["splits"]:
            raise ValueError(f"{folder} has no {split} split (it has "
                             f"{', '.join(index['splits'])})")
        self.classes = list(index["classes"])
        self.skipped = [tuple(item) for item in index.get("skipped", [])]
        self.files = [self.folder / s["file"] for s in index["splits"][split]["shards"]]
        self.members = np.load(self.folder / f"{split}.members.npy")
        self.targets = torch.from_numpy(self.members[:, 3].copy())
        self.size = to_2tuple(size)
        self.mode = mode
        self.crop_pct, self.interpolation = crop_pct, interpolation
        self._fds: dict[int, int] = {}
        self.images = _LazyImages(self, workers or default_workers())
        self.encoded_bytes = int(self.members[:, 2].sum()) if len(self.members) else 0

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1 if self.mode == "L" else 3, *self.size)

    def decoded_bytes(self) -> int:
        """What the split takes decoded in memory."""
        channels, height, width = self.image_shape
        return len(self) * channels * height * width

    def __getstate__(self) -> dict:
        """What a worker process needs (file descriptors and the thread pool are reopened)."""
        state = dict(self.__dict__)
        state["_fds"] = {}
        del state["images"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.images = _LazyImages(self, 1)

    def decode_many(self, indices: Sequence[int]) -> torch.Tensor:
        """Samples `indices` as one uint8 (B, C, H, W) batch, decoded one after the other
        (in a worker process, which is itself one of several decoding in parallel)."""
        return torch.stack([self.decode(int(index)) for index in indices])

    def decode_on(self, indices: Sequence[int], device: torch.device | str) -> torch.Tensor:
        """Samples `indices` as one uint8 batch on `device`, the JPEGs decoded there together
        by `torchvision.io.decode_jpeg` (nvJPEG on a GPU; EXIF orientation applied) and
        resized there; other formats are decoded by Pillow. Pixels can differ from `decode`'s
        by the decoders' rounding (and its reduced-scale DCT), not by geometry."""
        from torchvision.io import ImageReadMode, decode_jpeg

        encoded = [self.read(int(index)) for index in indices]
        jpegs = [i for i, data in enumerate(encoded) if data[:2] == b"\xff\xd8"]
        mode = ImageReadMode.GRAY if self.mode == "L" else ImageReadMode.RGB
        try:
            decoded = decode_jpeg([torch.frombuffer(bytearray(encoded[i]), dtype=torch.uint8)
                                   for i in jpegs], mode=mode, device=device,
                                  apply_exif_orientation=True) if jpegs else []
        except RuntimeError:  # a JPEG this decoder can't read (CMYK, say): Pillow does them all
            jpegs, decoded = [], []
        pixels = dict(zip(jpegs, decoded, strict=True))
        return torch.stack([
            resize_crop(pixels[i], self.size, self.crop_pct, self.interpolation) if i in pixels
            else self.decode(int(indices[i])).to(device) for i in range(len(encoded))])

    def read(self, index: int) -> bytes:
        """The encoded bytes of sample `index` (one positioned read; threads may share it)."""
        shard, offset, size, _ = (int(v) for v in self.members[index])
        if shard not in self._fds:
            self._fds[shard] = os.open(self.files[shard], os.O_RDONLY)
        return os.pread(self._fds[shard], size, offset)

    def decode(self, index: int) -> torch.Tensor:
        """Sample `index` as uint8 (C, H, W) pixels at `size`, prepared as `load_image`
        prepares a file (shorter side to size / crop_pct, centre crop)."""
        side = math.ceil(max(self.size) / self.crop_pct)
        with Image.open(io.BytesIO(self.read(index))) as image:
            if image.format == "JPEG":  # decode at a reduced DCT scale when that is enough
                image.draft(image.mode, (side, side))
            upright = ImageOps.exif_transpose(image) or image  # copied photos keep their EXIF
            pixels = to_tensor(to_mode(upright, self.mode), self.mode)
        return resize_crop(pixels, self.size, self.crop_pct, self.interpolation)


class _LazyImages:
    """`dataset.images` of a ShardedImages: shape, and indexing that decodes."""

    def __init__(self, dataset: ShardedImages, workers: int) -> None:
        self.dataset = dataset
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitkit-decode")

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.dataset), *self.dataset.image_shape))

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices) -> torch.Tensor:
        if isinstance(indices, slice):
            indices = range(*indices.indices(len(self.dataset)))
        elif isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        return torch.stack(list(self.pool.map(self.dataset.decode, indices)))

    def index_select(self, dim: int, indices: torch.Tensor) -> torch.Tensor:
        assert dim == 0
        return self[indices]
