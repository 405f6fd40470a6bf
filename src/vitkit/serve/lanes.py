"""Bounded lanes of work: a worker pool of its own and an admission limit in front of it, so
one kind of request (decoding uploads, explaining) can neither grow without bound nor take
the threads another kind needs. A full lane answers 503 with Retry-After at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .uploads import BadRequest

T = TypeVar("T")


class Busy(BadRequest):
    """A lane is full: 503 with a Retry-After (seconds) for the client."""

    def __init__(self, lane: str, limit: int, retry_after: int = 1) -> None:
        super().__init__(503, f"the server is busy: {limit} {lane} request(s) are already "
                              f"waiting; retry in {retry_after} s",
                         headers={"Retry-After": str(retry_after)}, close=True)
        self.lane = lane


def _lower_priority(niceness: int) -> None:
    """Make the calling thread (and the threads it starts) yield the CPU to others."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


class Lane:
    """At most `limit` requests inside at once (waiting or running); work runs on `workers`
    threads of the lane's own, at `niceness` (Linux: >0 leaves the CPU to other lanes first,
    so costly requests that were admitted still cannot slow cheap ones much)."""

    def __init__(self, name: str, workers: int, limit: int, niceness: int = 0) -> None:
        self.name, self.limit = name, limit
        self.inside = 0
        self.refused = 0
        self.pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"vitkit-{name}",
            initializer=_lower_priority if niceness else None,
            initargs=(niceness,) if niceness else ())

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Enter the lane, or raise Busy when `limit` requests are inside already."""
        if self.inside >= self.limit:
            self.refused += 1
            raise Busy(self.name, self.limit)
        self.inside += 1
        try:
            yield
        finally:
            self.inside -= 1

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` on one of the lane's threads."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)

    def close(self) -> None:
        """Drop queued work and let running work finish in the background."""
        self.pool.shutdown(wait=False, cancel_futures=True)
