"""Dynamic batching: requests that arrive within `max_delay` seconds of the first waiting one
run as one batch, on one worker thread beside the event loop. `max_batch` caps every model
run: a request with more images runs as several, and a job that would overflow a batch waits
for the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch


@dataclass
class _Job:
    inputs: torch.Tensor
    future: asyncio.Future


class DynamicBatcher:
    """`await batcher.submit(inputs)` gives `run(inputs)`'s rows for those inputs, computed
    together with whatever else arrived within the delay. `max_batch=1` turns batching off."""

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], max_batch: int = 32,
                 max_delay: float = 0.005,
                 on_batch: Callable[[int], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"--max-batch must be at least 1, got {max_batch}")
        if max_delay < 0:
            raise ValueError(f"--max-delay-ms must not be negative, got {max_delay * 1000}")
        self.run, self.max_batch, self.max_delay = run, max_batch, max_delay
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._held: _Job | None = None  # the job that did not fit in the last batch
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitkit-batch")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)

    async def submit(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._queue is None:
            raise RuntimeError("the batcher has not been started")
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(inputs), self.max_batch):
            futures.append(loop.create_future())
            await self._queue.put(_Job(inputs[start:start + self.max_batch], futures[-1]))
        parts = await asyncio.gather(*futures)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    async def call(self, function: Callable, *args: object) -> object:
        """Run `function(*args)` on the batcher's worker thread (never beside a batch)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    async def _gather(self, first: _Job) -> list[_Job]:
        """The first job and those arriving within the delay, up to max_batch images."""
        assert self._queue is not None
        jobs, count = [first], len(first.inputs)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay
        while count < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            if count + len(job.inputs) > self.max_batch:
                self._held = job
                break
            jobs.append(job)
            count += len(job.inputs)
        return jobs

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first, self._held = self._held or await self._queue.get(), None
            jobs = await self._gather(first)
            jobs = [job for job in jobs if not job.future.done()]  # a client that went away
            if not jobs:
                continue
            batch = torch.cat([job.inputs for job in jobs])
            if self.on_batch is not None:
                self.on_batch(len(batch))
            try:
                out = await loop.run_in_executor(self._pool, self.run, batch)
            except Exception as error:  # noqa: BLE001 - handed to every waiting request
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            start = 0
            for job in jobs:
                rows = out[start:start + len(job.inputs)]
                start += len(job.inputs)
                if not job.future.done():
                    job.future.set_result(rows)
