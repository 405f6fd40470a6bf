"""Files written whole or not at all: a temporary file in the same folder, flushed to disk,
then renamed over the target, so a crash or a full disk never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call `write(tmp_path)`, then move the finished file to `path` in one rename.

    The file gets the permissions any new file of this process gets (the umask), not the
    0600 of a temporary file. On any failure the temporary file is removed and `path` is
    left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | os.PathLike, document: Any, indent: int | None = 2) -> None:
    """Write `document` as JSON (plus a final newline) to `path` atomically."""
    write_text(path, json.dumps(document, indent=indent) + "\n")


def _umask() -> int:
    """This process's umask: from /proc on Linux, else by setting and restoring it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
