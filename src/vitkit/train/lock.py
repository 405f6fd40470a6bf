"""One run per run folder: an exclusive `fcntl.flock` on OUT/.vitkit.lock, held for the run's
life. The OS drops it when the process ends, however it ends (so `--resume` after a crash or
`kill -9` just works); a second run into the same folder is refused at once, with the PID
of the run that holds it. A forked child (a data-loading worker) drops its copy of the lock,
so that workers outliving a killed run do not keep its folder locked."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".vitkit.lock"
_HELD: set[int] = set()  # descriptors of the locks this process holds
_FOLDERS: set[Path] = set()  # the run folders whose lock this process holds


def _drop_inherited_locks() -> None:
    """In a forked child: point each inherited lock descriptor at /dev/null (the parent's
    lock stays; the child no longer shares it)."""
    for fd in _HELD:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    _HELD.clear()
    _FOLDERS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


class RunFolderBusy(ValueError):
    """Another live process is training into this run folder."""


@contextlib.contextmanager
def run_folder_lock(out: str | os.PathLike) -> Iterator[Path]:
    """Hold OUT's lock for the duration of the block (creating OUT if needed); raise
    RunFolderBusy naming the folder and the holder's PID when another process holds it. A
    folder this call created and that is still empty afterwards is removed again. Taken
    again by the process that holds it (planning, then training), it is simply held on."""
    import fcntl

    out = Path(out)
    if out.resolve() in _FOLDERS:
        yield out / LOCK_NAME
        return
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 - held open for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunFolderBusy(
                f"{out} is in use by another run (PID {holder}); wait for it to end, or choose "
                "another out=") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _HELD.add(handle.fileno())
        _FOLDERS.add(out.resolve())
        try:
            yield path
        finally:
            _HELD.discard(handle.fileno())
            _FOLDERS.discard(out.resolve())
            if created and [p.name for p in out.iterdir()] == [LOCK_NAME]:
                path.unlink()  # nothing was written: leave no trace of the attempt
                out.rmdir()
    finally:
        handle.close()
