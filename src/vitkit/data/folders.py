"""Finding labelled image files: `<class>/*` folders and `path,label` CSV files."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from .images import is_image_file

Items = list[tuple[str, int]]


def _list_images(folder: Path) -> list[str]:
    """Image files under `folder`, recursively, in sorted order (hidden files left out)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files)
                     if not f.startswith(".") and is_image_file(f))
    return found


def find_images(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Files as given, folders replaced by the image files under them (recursively, sorted,
    hidden files and folders left out). Paths that do not exist are kept, for the caller to
    report (decoding one says "no such file")."""
    found: list[str] = []
    for path in map(Path, paths):
        found.extend(_list_images(path) if path.is_dir() else [str(path)])
    return found


def class_folders(root: Path) -> list[str]:
    """Sorted names of the class sub-folders of `root`."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_class_folders(root: str | os.PathLike) -> tuple[Items, list[str]]:
    """(path, label) of every image under `root/<class>/`, and the sorted class names.

    Raises FileNotFoundError for a missing folder and ValueError for one with no class
    folders, a single class, or no images.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no data folder at {root}; check the data= path")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is a file, not a folder of class sub-folders")
    classes = class_folders(root)
    if not classes:
        loose = _list_images(root)
        hint = (f" (it holds {len(loose)} loose images: put each class in its own sub-folder)"
                if loose else "")
        raise ValueError(
            f"{root} has no class sub-folders{hint}; expected {root}/<class>/<image> for each "
            "class, or train/ and val/ folders laid out that way"
        )
    items: Items = []
    empty = []
    for label, name in enumerate(classes):
        files = _list_images(root / name)
        if not files:
            empty.append(name)
        items.extend((path, label) for path in files)
    if not items:
        raise ValueError(f"{root} holds class folders {classes[:5]} but no image files in them")
    if empty:
        raise ValueError(
            f"class folder(s) {empty} under {root} hold no image files; add images or remove "
            "the folder(s)"
        )
    if len(classes) < 2:
        raise ValueError(
            f"{root} holds a single class ({classes[0]!r}); a classifier needs at least 2 "
            "class folders"
        )
    return items, classes


def read_csv(path: str | os.PathLike) -> tuple[Items, list[str]]:
    """(path, label) rows of a `path,label` CSV (a header row is optional; relative paths
    are taken from the CSV's folder), with the sorted class names."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no CSV file at {path}")
    base = path.parent
    rows: list[tuple[str, str]] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}, line {number}: expected 'path,label', got {row}")
            file, label = row[0].strip(), row[1].strip()
            if number == 1 and file.lower() in ("path", "file", "filename", "image"):
                continue  # header
            rows.append((str(base / file) if not os.path.isabs(file) else file, label))
    if not rows:
        raise ValueError(f"{path} lists no images; expected rows of 'path,label'")
    classes = sorted({label for _, label in rows})
    if len(classes) < 2:
        raise ValueError(f"{path} names a single class ({classes[0]!r}); need at least 2")
    index = {name: i for i, name in enumerate(classes)}
    return [(file, index[label]) for file, label in rows], classes
