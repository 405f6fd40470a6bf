"""Feeding the training device: the decoded uint8 dataset moved to the device once when it
fits (batches are then indexed there), else each batch gathered from host memory in a
background thread, pinned, and copied on a side CUDA stream while the current batch trains.

A dataset streamed from shards is decoded by worker processes (a `DataLoader` over the
run's own batch order, so several batches are decoded ahead while the model trains and no
GIL is shared), or by threads in this process with `workers=0`. Either way batch k holds the
same images, so resuming is exact."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ..data import ImageTensorDataset
from ..data.decode import default_workers
from ..data.shards import ShardedImages
from ..data.sources import free_host_memory


def free_memory(device: torch.device) -> int:
    """Bytes free on `device` (for the CPU, the memory the OS calls available)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return free_host_memory()


class Feed:
    """uint8 image batches and their targets on `device`, by sample indices.

    `on_device` None decides by size: the dataset goes to the device when it takes under
    `fraction` of the device's free memory. On the CPU the data is already where it trains.
    A sharded dataset (`ShardedImages`) is always streamed: each batch is read and decoded in
    the background while the previous one trains.
    `how` says which was chosen and why, for the run's log.
    `workers` decoding processes for streamed shards (None: the cores, at most 8; 0: threads);
    `decode_on_device` decodes streamed JPEGs on the device instead (None: on a GPU).
    """

    def __init__(self, data: ImageTensorDataset | ShardedImages, device: torch.device,
                 on_device: bool | None = None, fraction: float = 0.5,
                 workers: int | None = None, decode_on_device: bool | None = None) -> None:
        self.device = device
        self._loader: Iterator | None = None
        self.workers, self.decode_on_device = 0, False
        if not isinstance(data.images, torch.Tensor):  # images decoded per batch from disk
            self.decode_on_device = (device.type == "cuda" if decode_on_device is None
                                     else decode_on_device)
            self.workers = 0 if self.decode_on_device else (
                default_workers() if workers is None else workers)
            by = (f"{device} (JPEGs, torchvision.io.decode_jpeg)" if self.decode_on_device
                  else f"{self.workers} worker processes" if self.workers
                  else "background threads")
            self.on_device, self.how = False, (
                f"streamed from {len(getattr(data, 'files', []))} shard(s), decoded per batch "
                f"by {by}")
            self._stream_from(data)
            return
        size = data.images.numel() + data.targets.numel() * 8
        gib = size / 2**30
        if device.type == "cpu" and on_device is None:
            on_device = True
            self.how = f"the dataset ({gib:.2f} GiB) in host memory, indexed in place"
        elif on_device is None:
            free = free_memory(device)
            on_device = size < fraction * free
            self.how = (f"the dataset ({gib:.2f} GiB) {'on' if on_device else 'streamed to'} "
                        f"{device}: {'under' if on_device else 'over'} {fraction:.0%} of its "
                        f"{free / 2**30:.1f} GiB free")
        else:
            self.how = f"the dataset ({gib:.2f} GiB) {'on' if on_device else 'streamed to'} " \
                       f"{device} (forced)"
        self.on_device = on_device
        if on_device:
            self.images = data.images.to(device)
            self.targets = data.targets.to(device)
        else:
            self._stream_from(data)

    def _stream_from(self, data) -> None:
        self.data = data
        self.images, self.targets = data.images, data.targets
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitkit-feed")
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._pending: tuple[torch.Tensor, Future] | None = None

    def follow(self, order: Callable[[int], torch.Tensor], start: int, stop: int) -> None:
        """Decode in worker processes the batches `order(step)` for steps start..stop-1, ahead
        of `get` asking for them in that order (a no-op unless streaming with workers)."""
        if not self.workers or start >= stop:
            return
        loader = torch.utils.data.DataLoader(
            _DecodeBatches(self.data), batch_sampler=_Steps(order, start, stop),
            num_workers=self.workers, collate_fn=_as_is, prefetch_factor=2,
            pin_memory=self.device.type == "cuda")
        self._loader = iter(loader)

    def get(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch at `indices` (a CPU tensor), on the device."""
        if self.on_device:
            index = indices.to(self.device, non_blocking=True)
            return self.images.index_select(0, index), self.targets.index_select(0, index)
        if self.decode_on_device:
            return (self.data.decode_on(indices.tolist(), self.device),
                    self.targets.index_select(0, indices).to(self.device, non_blocking=True))
        if self._loader is not None:
            decoded, images, targets = next(self._loader)
            if not torch.equal(decoded, indices):
                raise RuntimeError("the decoding workers are out of step with the training "
                                   "loop (a bug in vitkit: please report it)")
            return (images.to(self.device, non_blocking=True),
                    targets.to(self.device, non_blocking=True))
        if self._pending is not None and torch.equal(self._pending[0], indices):
            images, targets, event = self._pending[1].result()
        else:
            images, targets, event = self._copy(indices)
        self._pending = None
        if event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            images.record_stream(current)
            targets.record_stream(current)
        return images, targets

    def prefetch(self, indices: torch.Tensor) -> None:
        """Start copying the batch at `indices` in the background (streaming by threads)."""
        if not self.on_device and self._loader is None and not self.decode_on_device:
            self._pending = (indices, self._pool.submit(self._copy, indices))

    def _copy(self, indices: torch.Tensor):
        images = self.images.index_select(0, indices)
        targets = self.targets.index_select(0, indices)
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
        """Stop the background threads and the decoding processes."""
        self._loader = None  # the DataLoader's iterator stops its workers when dropped
        if not self.on_device:
            self._pool.shutdown(wait=True)


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

    def __init__(self, order: Callable[[int], torch.Tensor], start: int, stop: int) -> None:
        self.order, self.start, self.stop = order, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[list[int]]:
        return (self.order(step).tolist() for step in range(self.start, self.stop))


def _as_is(batch):
    """The worker's batch unchanged (it is already stacked)."""
    return batch
