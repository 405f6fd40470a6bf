"""The errors vitkit raises on purpose, and the helpers that word them. Every message says
what was wrong and what to do; the command line prints it as one line and exits 2."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import warnings
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint that can't be loaded into the model asked for; the message says why."""


class TrainingError(RuntimeError):
    """A run that had to stop; the message says why and what was kept."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (readers' messages run long), or its type's name."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def not_enough_memory(path: str | os.PathLike, what: str = "tensors",
                      remedy: str = "download or save it again") -> str:
    """The message for a file whose reading ran out of memory: what it claims, and what to do."""
    return (f"not enough memory to read {path}: it claims {what} larger than this machine can "
            f"hold, so it is damaged or too big for this machine; {remedy}")


def check_image_batch(shape: tuple[int, ...], chans: int) -> None:
    """Refuse a tensor of `shape` that is not a batch (B, C, H, W) of `chans`-channel images."""
    if len(shape) != 4:
        raise ValueError(f"expected a batch of images (B, C, H, W), got a tensor of shape "
                         f"{tuple(shape)}; add a batch dimension with x.unsqueeze(0)")
    if shape[1] != chans:
        raise ValueError(f"this model takes {chans}-channel images, got {shape[1]} channels "
                         f"(shape {tuple(shape)})")


def check_fixed_input(shape: tuple[int, ...], expected: tuple[int, ...], backend: str) -> None:
    """Refuse a batch of `shape` that a graph built for (B, *`expected`) images cannot run,
    saying why, before the runtime behind `backend` fails with its own words (or, for a
    compiled graph, first spends a minute recompiling)."""
    chans, height, width = expected
    check_image_batch(shape, chans)
    if tuple(shape[2:]) != (height, width):
        raise ValueError(f"backend={backend!r} runs the model at the {height}x{width} images "
                         f"it was built for, got {shape[2]}x{shape[3]} (shape {tuple(shape)}); "
                         f"resize the images to {height}x{width} (vitkit.data.load_image "
                         f"does), or use backend='eager' or 'compiled', which take other sizes")


def renamed_keyword(function: str, old: str, new: str, old_value: T | None, value: T) -> T:
    """`value`, or `old_value` with a DeprecationWarning when the caller used the old name."""
    if old_value is None:
        return value
    warnings.warn(f"{function}({old}=...) is deprecated; use {new}=", DeprecationWarning,
                  stacklevel=3)
    return old_value


@functools.cache
def source_checkout() -> Path | None:
    """The source checkout this vitkit runs from (its pyproject.toml beside the src/ folder
    that holds the package, or an editable install's folder), or None for an installed one."""
    package = Path(__file__).resolve().parent
    if package.parent.name == "src" and _is_vitkit_project(package.parent.parent):
        return package.parent.parent
    folder = _editable_install_folder()
    return folder if folder is not None and _is_vitkit_project(folder) else None


def _editable_install_folder() -> Path | None:
    """The folder of `pip install -e FOLDER` from the install's direct_url.json (PEP 610)."""
    from importlib.metadata import PackageNotFoundError, distribution
    from urllib.parse import unquote, urlparse

    try:
        record = json.loads(distribution("vitkit").read_text("direct_url.json") or "{}")
    except (PackageNotFoundError, ValueError):
        return None
    if not isinstance(record, dict) or not (record.get("dir_info") or {}).get("editable"):
        return None
    url = str(record.get("url", ""))
    if not url.startswith("file://"):
        return None
    return Path(unquote(urlparse(url).path))


def _is_vitkit_project(root: Path) -> bool:
    """Whether `root` holds the pyproject.toml of the project named vitkit."""
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return re.search(r"""^name\s*=\s*["']vitkit["']""", text, re.MULTILINE) is not None


def install_hint(extra: str) -> str:
    """The pip command that installs vitkit's `extra`: from the source checkout vitkit runs
    from (`pip install -e '<checkout>[extra]'`), else from the package index."""
    checkout = source_checkout()
    if checkout is not None:
        return f"pip install -e {shlex.quote(f'{checkout}[{extra}]')}"
    return f"pip install {shlex.quote(f'vitkit[{extra}]')}"


class MissingExtra(ValueError):
    """An optional dependency that is not installed; the message names the extra to install
    (a ValueError, so the command line prints it as one line)."""


# Loggers whose warnings at an optional package's import speak to that package's developers,
# not to vitkit's users: torch's pytree registry tells torchao (0.18, beside torch 2.14) that
# its Enum registration is deprecated, a line on every command that quantizes.
IMPORT_NOISE = ("torch.utils._pytree",)


def require(module: str, extra: str, purpose: str):  # noqa: ANN201 - returns a module
    """Import `module` or raise MissingExtra naming the pip extra that installs it."""
    import importlib
    import logging

    loggers = [logging.getLogger(name) for name in IMPORT_NOISE]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtra(f"{purpose} needs {module.split('.')[0]}, which is not installed: "
                           f"{install_hint(extra)}") from error
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
