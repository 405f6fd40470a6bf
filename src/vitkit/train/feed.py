"""Feeding the training device: the run's data order, one small feeder per way of reaching the
device, and `step_batches`, which hands the training loop each step's micro-batches already on
the device and augmented.

Exact resume: the order of epoch e is a permutation drawn from a generator seeded with
(seed, e), and every step reseeds the global RNG from (seed, step, rank) before its
augmentation and dropout, so a run resumed after step k takes the same steps k+1.. as one
that never stopped.

The feeders, chosen by `make_feeder`:
- `InMemory`: the decoded uint8 dataset on the device (or in host memory on the CPU),
  batches indexed in place;
- `HostThread`: the dataset stays in host memory; each batch is gathered, pinned and copied
  on a side CUDA stream in a background thread while the previous one trains;
- `Workers`: a dataset streamed from shards, decoded by `DataLoader` worker processes over
  the run's own batch order (so no GIL is shared and batch k holds the same images);
- `DeviceDecode`: streamed JPEG shards decoded on the device (nvJPEG on a GPU).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ..data import ImageTensorDataset
from ..data.decode import default_workers
from ..data.shards import ShardedImages
from ..data.sources import free_host_memory

Batch = tuple[torch.Tensor, torch.Tensor]  # uint8 images (B, C, H, W), targets (B,)
Order = Callable[[int], torch.Tensor]  # step -> this rank's sample indices


# -- the data order ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def epoch_order(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled sample order of one epoch, a pure function of (seed, epoch) (kept for the
    epoch's steps: do not modify it)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(size, generator=generator)


def batch_indices(size: int, batch: int, seed: int, step: int, steps_per_epoch: int
                  ) -> torch.Tensor:
    """The sample indices of step `step`'s global batch: a slice of its epoch's order."""
    epoch, position = divmod(step, steps_per_epoch)
    return epoch_order(size, seed, epoch)[position * batch:(position + 1) * batch]


def step_seed(seed: int, step: int, rank: int) -> int:
    """The global RNG seed of one optimizer step on one rank."""
    return ((seed * 1_000_003 + step) * 257 + rank) % (2**63)


def step_batches(feeder: Feeder, order: Order, start: int, stop: int, *, seed: int, rank: int,
                 augment: Callable[[torch.Tensor, torch.Tensor], Batch], accum_steps: int
                 ) -> Iterator[Iterator[Batch]]:
    """For each step from `start` to `stop`: its micro-batches, on the device, augmented as
    the step takes them (one micro-batch of floats in memory at a time)."""
    feeder.follow(order, start, stop)  # worker processes start decoding ahead
    for step in range(start, stop):
        indices = order(step)
        if step + 1 < stop:
            feeder.prefetch(order(step + 1))  # the next batch copies while this one trains
        torch.manual_seed(step_seed(seed, step, rank))  # before augmentation and dropout
        images, targets = feeder.get(indices)
        yield (augment(i, t) for i, t in zip(images.chunk(accum_steps),
                                             targets.chunk(accum_steps), strict=True))


# -- the feeders -------------------------------------------------------------------------------
class Feeder:
    """Batches by sample indices, on `device`; `how` says which feeder and why."""

    how: str = ""
    on_device: bool = False

    def __init__(self, data: ImageTensorDataset | ShardedImages, device: torch.device) -> None:
        self.data, self.device = data, device

    def get(self, indices: torch.Tensor) -> Batch:
        raise NotImplementedError

    def follow(self, order: Order, start: int, stop: int) -> None:
        """Learn the batches of steps start..stop-1 ahead of `get` (workers only)."""

    def prefetch(self, indices: torch.Tensor) -> None:
        """Start fetching the batch at `indices` in the background (threads only)."""

    def close(self) -> None:
        """Stop background threads and processes."""


class InMemory(Feeder):
    """The dataset moved to the device once; batches are indexed there."""

    on_device = True

    def __init__(self, data: ImageTensorDataset, device: torch.device) -> None:
        super().__init__(data, device)
        self.images, self.targets = data.images.to(device), data.targets.to(device)

    def get(self, indices: torch.Tensor) -> Batch:
        index = indices.to(self.device, non_blocking=True)
        return self.images.index_select(0, index), self.targets.index_select(0, index)


class HostThread(Feeder):
    """Each batch gathered from host memory in a background thread, pinned and copied on a
    side CUDA stream, so the copy overlaps the previous step."""

    def __init__(self, data: ImageTensorDataset, device: torch.device) -> None:
        super().__init__(data, device)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitkit-feed")
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._pending: tuple[torch.Tensor, Future] | None = None

    def prefetch(self, indices: torch.Tensor) -> None:
        self._pending = (indices, self._pool.submit(self._copy, indices))

    def get(self, indices: torch.Tensor) -> Batch:
        if self._pending is not None and torch.equal(self._pending[0], indices):
            images, targets, event = self._pending[1].result()
        else:
            images, targets, event = self._copy(indices)
        self._pending = None
        if event is not None:  # the compute stream waits for the side stream's copy
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            images.record_stream(current)
            targets.record_stream(current)
        return images, targets

    def _copy(self, indices: torch.Tensor):
        images = self.data.images.index_select(0, indices)
        targets = self.data.targets.index_select(0, indices)
        if self._stream is None:
            return images.to(self.device), targets.to(self.device), None
        images, targets = images.pin_memory(), targets.pin_memory()
        with torch.cuda.stream(self._stream):
            images = images.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self._stream)
        return images, targets, event

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class Workers(HostThread):
    """Streamed shards decoded by `workers` DataLoader processes, a few steps ahead, in the
    run's own order (`follow`); without `follow`, batches are decoded in a thread."""

    def __init__(self, data: ShardedImages, device: torch.device, workers: int) -> None:
        super().__init__(data, device)
        self.workers = workers
        self._loader: Iterator | None = None

    def follow(self, order: Order, start: int, stop: int) -> None:
        if not self.workers or start >= stop:
            return
        loader = torch.utils.data.DataLoader(
            _DecodeBatches(self.data), batch_sampler=_Steps(order, start, stop),
            num_workers=self.workers, collate_fn=_as_is, prefetch_factor=2,
            pin_memory=self.device.type == "cuda")
        self._loader = iter(loader)

    def prefetch(self, indices: torch.Tensor) -> None:
        if self._loader is None:
            super().prefetch(indices)

    def get(self, indices: torch.Tensor) -> Batch:
        if self._loader is None:
            return super().get(indices)
        decoded, images, targets = next(self._loader)
        if not torch.equal(decoded, indices):
            raise RuntimeError("the decoding workers are out of step with the training loop "
                               "(a bug in vitkit: please report it)")
        return (images.to(self.device, non_blocking=True),
                targets.to(self.device, non_blocking=True))

    def close(self) -> None:
        self._loader = None  # the DataLoader's iterator stops its workers when dropped
        super().close()


class DeviceDecode(Feeder):
    """Streamed JPEGs decoded on the device (torchvision.io.decode_jpeg: nvJPEG on a GPU)."""

    def get(self, indices: torch.Tensor) -> Batch:
        return (self.data.decode_on(indices.tolist(), self.device),
                self.data.targets.index_select(0, indices).to(self.device, non_blocking=True))


def make_feeder(data: ImageTensorDataset | ShardedImages, device: torch.device,
                on_device: bool | None = None, fraction: float = 0.5,
                workers: int | None = None, decode_on_device: bool | None = None) -> Feeder:
    """The feeder for `data` on `device`. Shards (`ShardedImages`) are streamed: decoded on
    the device when `decode_on_device` (None: on a GPU), else by `workers` processes (None:
    the cores, at most 8; 0: threads). Decoded data goes to the device when `on_device`
    (None: when it takes under `fraction` of the device's free memory; on the CPU it is
    already there)."""
    if not isinstance(data.images, torch.Tensor):  # images decoded per batch from disk
        shards = f"streamed from {len(getattr(data, 'files', []))} shard(s), decoded per batch by"
        if device.type == "cuda" if decode_on_device is None else decode_on_device:
            feeder: Feeder = DeviceDecode(data, device)
            feeder.how = f"{shards} {device} (JPEGs, torchvision.io.decode_jpeg)"
            return feeder
        count = default_workers() if workers is None else workers
        feeder = Workers(data, device, count)
        feeder.how = f"{shards} {f'{count} worker processes' if count else 'background threads'}"
        return feeder
    gib = (data.images.numel() + data.targets.numel() * 8) / 2**30
    if device.type == "cpu" and on_device is None:
        on_device, why = True, "in host memory, indexed in place"
    elif on_device is None:
        free = free_memory(device) / 2**30
        on_device = gib < fraction * free
        why = (f"{'on' if on_device else 'streamed to'} {device}: "
               f"{'under' if on_device else 'over'} {fraction:.0%} of its {free:.1f} GiB free")
    else:
        why = f"{'on' if on_device else 'streamed to'} {device} (forced)"
    feeder = InMemory(data, device) if on_device else HostThread(data, device)
    feeder.how = f"the dataset ({gib:.2f} GiB) {why}"
    return feeder


def free_memory(device: torch.device) -> int:
    """Bytes free on `device` (for the CPU, the memory the OS calls available)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return free_host_memory()


class _DecodeBatches(torch.utils.data.Dataset):
    """For DataLoader workers: a list of sample indices -> (indices, uint8 images, targets)."""

    def __init__(self, data: ShardedImages) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.tensor(indices, dtype=torch.long)
        return index, self.data.decode_many(indices), self.data.targets[index]


class _Steps(torch.utils.data.Sampler):
    """The sample indices of steps start..stop-1, each batch as the training loop takes it."""

    def __init__(self, order: Order, start: int, stop: int) -> None:
        self.order, self.start, self.stop = order, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[list[int]]:
        return (self.order(step).tolist() for step in range(self.start, self.stop))


def _as_is(batch):
    """The worker's batch unchanged (it is already stacked)."""
    return batch
