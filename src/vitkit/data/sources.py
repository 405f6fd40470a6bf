"""`load_splits`: one entry point for every data source vitkit's --data accepts (image
folders, CSV files, built-in names), giving uint8 train/val/test datasets of one size."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models import to_2tuple
from .builtin import load_digits
from .cache import default_cache_dir
from .dataset import ImageTensorDataset
from .decode import decode_cached, most_common_size, report_skipped
from .folders import class_folders, find_images, read_csv, scan_class_folders
from .shards import INDEX_NAME, ShardedImages, is_shard_folder
from .transforms import convert_channels, resize_crop
from .tvsets import TORCHVISION_SETS, load_torchvision

log = logging.getLogger("vitkit")

BUILTIN_SOURCES = ("digits", *TORCHVISION_SETS)


@dataclass
class DataSplits:
    """The datasets of one source; `val` and `test` are None where the source has none (and
    any split is None that `load_splits(only=...)` was not asked for)."""

    train: ImageTensorDataset | None
    val: ImageTensorDataset | None
    test: ImageTensorDataset | None
    name: str

    def get(self, split: str) -> ImageTensorDataset:
        """The split named 'train', 'val' or 'test'; a clear error if this source lacks it."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', not {split!r}")
        dataset = getattr(self, split)
        if dataset is None:
            have = [s for s in ("train", "val", "test") if getattr(self, s) is not None]
            raise ValueError(f"{self.name} has no {split} split (it has {', '.join(have)})")
        return dataset


def stratified_indices(targets: torch.Tensor, num_classes: int, fraction: float, seed: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ascending (train, val) indices that put `fraction` of each class (at least one item of
    classes with 2+) in val, drawn with `seed`."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_split={fraction} must be a fraction between 0 and 1")
    generator = torch.Generator().manual_seed(seed)
    val_parts, train_parts = [], []
    for label in range(num_classes):
        members = torch.nonzero(targets == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = round(fraction * len(members))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        val_parts.append(members[:count])
        train_parts.append(members[count:])
    train_idx, val_idx = torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values
    if len(val_idx) == 0:
        raise ValueError(f"val_split={fraction} leaves no validation images; use a larger one")
    return train_idx, val_idx


def stratified_split(dataset: ImageTensorDataset, fraction: float, seed: int
                     ) -> tuple[ImageTensorDataset, ImageTensorDataset]:
    """Split off `fraction` of each class (at least one image of classes with 2+) as val."""
    train_idx, val_idx = stratified_indices(dataset.targets, dataset.num_classes, fraction, seed)
    train, val = dataset.subset(train_idx), dataset.subset(val_idx)
    train.skipped, val.skipped = list(dataset.skipped), []  # the source's files: listed once
    return train, val


def check_same_classes(train: list[str], other: list[str], name: str) -> None:
    """Raise a ValueError naming the differences when split `name` has other class names."""
    if other == train:
        return
    only_train = sorted(set(train) - set(other))
    only_other = sorted(set(other) - set(train))
    parts = []
    if only_train:
        parts.append(f"in train but not in {name}: {only_train}")
    if only_other:
        parts.append(f"in {name} but not in train: {only_other}")
    detail = "; ".join(parts) or "the same names in another order"
    raise ValueError(f"the {name} classes differ from the train classes ({detail}); give both "
                     "splits the same class folders")


@dataclass(frozen=True)
class Decoding:
    """How a source's files become pixels: their size (None: the most common in train),
    'RGB' or 'L', the resize-and-crop of `load_image`, and where decoded sets are cached."""

    size: tuple[int, int] | None
    mode: str
    crop_pct: float
    interpolation: str
    cache: Path
    progress: bool

    def files(self, items, classes, what: str, size=None) -> ImageTensorDataset:
        """Decode (path, label) items through the cache."""
        return decode_cached(items, classes, size or self.size, self.mode, self.cache,
                             self.progress, what, self.crop_pct, self.interpolation)

    def adapt(self, dataset: ImageTensorDataset | None, in_chans: int | None
              ) -> ImageTensorDataset | None:
        """A built-in dataset in memory converted to these channels and resized and cropped
        as decoded files are."""
        if dataset is None:
            return None
        images = dataset.images
        if in_chans is not None:
            images = convert_channels(images, in_chans)
        if self.size is not None:
            images = resize_crop(images, self.size, self.crop_pct, self.interpolation)
        if images is dataset.images:
            return dataset
        return ImageTensorDataset(images, dataset.targets, dataset.classes, dataset.skipped)


def _builtin(name: str, data_dir: str | None, cache: Path, wanted: set[str]
             ) -> tuple[ImageTensorDataset | None, ImageTensorDataset | None]:
    """The train and test sets of a built-in source (None for a split not wanted)."""
    def load(split: str) -> ImageTensorDataset | None:
        if split not in wanted:
            return None
        if name == "digits":
            return load_digits(split)
        return load_torchvision(name, split, data_dir, cache)

    return load("train"), load("test")


def _carve(items: list[tuple[str, int]], classes: list[str], decoding: Decoding,
           wanted: set[str], what: str, val_split: float | None, seed: int
           ) -> tuple[ImageTensorDataset | None, ImageTensorDataset | None]:
    """(train, val) of a source's train files, each decoded only if wanted. `val_split` carves
    val out of the (path, label) items before anything is decoded, so a load of val alone
    decodes only val's files and gets the very set a full load gets, broken files or not."""
    if val_split is None:
        return (decoding.files(items, classes, what) if "train" in wanted else None), None
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    indices = stratified_indices(labels, len(classes), val_split, seed)
    # The size of all the train files (not of one part), so both parts match a full load.
    size = decoding.size or most_common_size([path for path, _ in items])
    parts = []
    for split, part in zip(("train", "val"), indices, strict=True):
        if split not in wanted:
            parts.append(None)
        elif len(part) == 0:  # every class of a single image went to val
            channels = 1 if decoding.mode == "L" else 3
            parts.append(ImageTensorDataset(torch.empty((0, channels, *size), dtype=torch.uint8),
                                            torch.empty(0, dtype=torch.int64), list(classes)))
        else:
            parts.append(decoding.files([items[i] for i in part.tolist()], classes,
                                        f"{what} ({split})", size))
    return parts[0], parts[1]


def _folder_root(root: Path, decoding: Decoding, wanted: set[str], val_split: float | None,
                 seed: int):
    """train/ with val/ and/or test/ beside it, each `<class>/*` (val carved out of train/
    when there is no val/). Only the wanted splits are decoded; the others' folders are
    still checked to hold the same classes."""
    items, classes = scan_class_folders(root / "train")
    found: dict[str, list[tuple[str, int]]] = {}
    for split in ("val", "test"):
        if (root / split).is_dir():
            found[split], split_classes = scan_class_folders(root / split)
            check_same_classes(classes, split_classes, split)
    carve = None if "val" in found else val_split  # a val/ folder wins over val_split
    train, val = _carve(items, classes, decoding, wanted, f"{root.name}/train", carve, seed)
    wanted_found = {split: found[split] for split in found if split in wanted}
    size = decoding.size  # else train's, also when train itself is not decoded
    if size is None and wanted_found:
        size = (tuple(train.images.shape[-2:]) if train is not None
                else most_common_size([path for path, _ in items]))
    others = {split: decoding.files(split_items, classes, f"{root.name}/{split}", size)
              for split, split_items in wanted_found.items()}
    return train, val if val is not None else others.get("val"), others.get("test")


def _shard_source(path: Path, decoding: Decoding, wanted: set[str],
                  memory_budget: int | None):
    """(train, val, test) of a shard folder: decoded into memory when all of it fits in the
    budget (default: a quarter of the memory available), else read from disk per batch."""
    index = json.loads((path / INDEX_NAME).read_text())
    size = decoding.size or to_2tuple(index.get("max_side") or 224)
    splits = {split: ShardedImages(path, split, size, decoding.mode,
                                   crop_pct=decoding.crop_pct,
                                   interpolation=decoding.interpolation)
              for split in ("train", "val", "test")
              if split in index["splits"] and split in wanted}
    total = sum(d.decoded_bytes() for d in splits.values())
    budget = memory_budget if memory_budget is not None else free_host_memory() // 4
    in_memory = total <= budget
    log.info("%s: %s (%.2f GiB decoded at %dx%d, %s the memory budget of %.2f GiB)", path.name,
             "decoded into memory" if in_memory else "streamed from its shards",
             total / 2**30, size[0], size[1], "within" if in_memory else "over", budget / 2**30)
    if in_memory:
        splits = {split: ImageTensorDataset(d.images[:], d.targets, d.classes, d.skipped)
                  for split, d in splits.items()}
    return splits.get("train"), splits.get("val"), splits.get("test")


def free_host_memory() -> int:
    """Bytes of memory the OS reports available (MemAvailable), or 8 GiB when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def _file_source(path: Path, decoding: Decoding, wanted: set[str], val_split: float | None,
                 seed: int):
    """(train, val, test) of a folder or a CSV file, val carved out of train by `_carve`."""
    if path.is_dir() and (path / "train").is_dir():
        return _folder_root(path, decoding, wanted, val_split, seed)
    if path.is_file() and path.suffix.lower() == ".csv":
        items, classes = read_csv(path)
    elif path.is_dir():
        items, classes = scan_class_folders(path)
    elif path.exists():
        raise ValueError(f"{path} is neither a folder nor a .csv file of 'path,label' rows")
    else:
        raise FileNotFoundError(
            f"no data at {path}: give a folder, a .csv file, or one of "
            f"{', '.join(BUILTIN_SOURCES)}"
        )
    return (*_carve(items, classes, decoding, wanted, path.name, val_split, seed), None)


def _carve_in_memory(train: ImageTensorDataset | None, val: ImageTensorDataset | None,
                     val_split: float | None, seed: int):
    """(train, val) with val carved out of a train set already in memory (a built-in or a
    shard folder) when the source has no val of its own."""
    if val is None and val_split is not None and train is not None:
        return stratified_split(train, val_split, seed)
    return train, val


def source_classes(source: str) -> list[str] | None:
    """The class names of a folder or CSV source, read from names alone (nothing decoded), so
    a mismatch is reported before the slow part; None for built-ins and missing paths."""
    path = Path(os.path.expanduser(source))
    if source.lower() in BUILTIN_SOURCES or not path.exists():
        return None
    if is_shard_folder(path):
        return list(json.loads((path / INDEX_NAME).read_text())["classes"])
    if path.is_dir():
        return scan_class_folders(path / "train" if (path / "train").is_dir() else path)[1]
    if path.suffix.lower() == ".csv":
        return read_csv(path)[1]
    return None


def load_splits(
    source: str,
    *,
    img_size: int | tuple[int, int] | None = None,
    in_chans: int | None = None,
    val_split: float | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
    crop_pct: float = 1.0,
    interpolation: str = "bicubic",
    only: str | None = None,
    memory_budget: int | None = None,
) -> DataSplits:
    """Load a data source as uint8 datasets of one image size and channel count.

    `source` is a built-in name (digits, cifar10, cifar100, mnist, fashion-mnist), a folder
    (train/ with val/ or test/ beside it, or just `<class>/*`), or a `path,label` CSV.
    Images are resized (shorter side to img_size / crop_pct, with `interpolation`) and
    centre-cropped to `img_size`, as `load_image` does, else kept at the most common size
    in train; `in_chans` 1 gives greyscale, 3 RGB (default: 3 for files, the data's own for
    built-ins). `val_split` carves a stratified, seeded validation set out of train when the
    source has none: from a folder's or CSV's list of files before decoding (so `only="val"`
    decodes just the files of the val that a full load gives), from a built-in's images in
    memory. `only` ('train', 'val' or 'test') decodes just that split. Decoded files are
    cached in memory and in `cache_dir` (default $VITKIT_CACHE/datasets or
    ~/.cache/vitkit/datasets). A folder written by `vitkit shards` is decoded into memory
    when it fits `memory_budget` bytes (default: a quarter of the available memory), else
    its splits are `ShardedImages` read per batch.
    """
    if in_chans not in (None, 1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    if only not in (None, "train", "val", "test"):
        raise ValueError(f"only must be 'train', 'val' or 'test', not {only!r}")
    decoding = Decoding(
        size=to_2tuple(img_size) if img_size is not None else None,
        mode="L" if in_chans == 1 else "RGB", crop_pct=crop_pct, interpolation=interpolation,
        cache=Path(cache_dir) if cache_dir else default_cache_dir(), progress=progress)
    wanted = {"train", "val", "test"} if only is None else {only}
    in_memory = wanted | {"train"} if only == "val" and val_split is not None else wanted
    path = Path(os.path.expanduser(source))
    if source.lower() in BUILTIN_SOURCES:
        name, val = source.lower(), None
        train, test = (decoding.adapt(d, in_chans)
                       for d in _builtin(name, data_dir, decoding.cache, in_memory))
        train, val = _carve_in_memory(train, val, val_split, seed)
    elif is_shard_folder(path):
        name = path.name
        train, val, test = _shard_source(path, decoding, in_memory, memory_budget)
        train, val = _carve_in_memory(train, val, val_split, seed)
    else:
        name = path.name
        train, val, test = _file_source(path, decoding, wanted, val_split, seed)
    splits = DataSplits(train=train, val=val, test=test, name=name)
    _report(splits)
    return splits


def _report(splits: DataSplits) -> None:
    """Warn about skipped files once per split, and check every split has train's classes."""
    reference = next((d for d in (splits.train, splits.val, splits.test) if d is not None), None)
    for split_name in ("train", "val", "test"):
        dataset = getattr(splits, split_name)
        if dataset is None:
            continue
        report_skipped(dataset, f"{splits.name}/{split_name}")
        if dataset is not reference:
            check_same_classes(reference.classes, dataset.classes, split_name)


def load_unlabelled(source: str, *, img_size: int | tuple[int, int] | None = None,
                    in_chans: int | None = None, data_dir: str | None = None,
                    cache_dir: str | None = None, progress: bool = True) -> ImageTensorDataset:
    """Images for self-supervised pre-training, labels ignored: a folder of images (no class
    sub-folders needed), or the train split of anything `load_splits` reads."""
    path = Path(os.path.expanduser(source))
    if path.is_dir() and not (path / "train").is_dir() and not class_folders(path):
        decoding = Decoding(
            size=to_2tuple(img_size) if img_size is not None else None,
            mode="L" if in_chans == 1 else "RGB", crop_pct=1.0, interpolation="bicubic",
            cache=Path(cache_dir) if cache_dir else default_cache_dir(), progress=progress)
        files = find_images([path])
        if not files:
            raise ValueError(f"{path} holds no image files")
        dataset = decoding.files([(file, 0) for file in files], ["unlabelled"], path.name)
        report_skipped(dataset, path.name)
        return dataset
    return load_splits(source, img_size=img_size, in_chans=in_chans, data_dir=data_dir,
                       cache_dir=cache_dir, progress=progress, only="train").train


def shard_items(source: str, data_dir: str | None = None
                ) -> tuple[dict[str, list[tuple[object, int]]], list[str]]:
    """What `vitkit shards` writes: per split, (file path or uint8 image, label) items, and
    the class names; without decoding the files."""
    if source.lower() in BUILTIN_SOURCES:
        cache = default_cache_dir()
        train, test = _builtin(source.lower(), data_dir, cache, {"train", "test"})
        return ({split: list(zip(d.images, d.targets.tolist(), strict=True))
                 for split, d in (("train", train), ("test", test))}, train.classes)
    path = Path(os.path.expanduser(source))
    if path.is_file() and path.suffix.lower() == ".csv":
        items, classes = read_csv(path)
        return {"train": items}, classes
    if path.is_dir() and (path / "train").is_dir():
        items, classes = scan_class_folders(path / "train")
        splits = {"train": items}
        for split in ("val", "test"):
            if (path / split).is_dir():
                split_items, split_classes = scan_class_folders(path / split)
                check_same_classes(classes, split_classes, split)
                splits[split] = split_items
        return splits, classes
    items, classes = scan_class_folders(path)
    return {"train": items}, classes
