"""Feeding the training device: the decoded uint8 dataset moved to the device once when it
fits (batches are then indexed there), else each batch gathered from host memory in a
background thread, pinned, and copied on a side CUDA stream while the current batch trains."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ..data import ImageTensorDataset
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
    """

    def __init__(self, data: ImageTensorDataset | ShardedImages, device: torch.device,
                 on_device: bool | None = None, fraction: float = 0.5) -> None:
        self.device = device
        if not isinstance(data.images, torch.Tensor):  # images decoded per batch from disk
            self.on_device, self.how = False, (
                f"streamed from {len(getattr(data, 'files', []))} shard(s), decoded per batch "
                "in background threads")
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
        self.images, self.targets = data.images, data.targets
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vitkit-feed")
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._pending: tuple[torch.Tensor, Future] | None = None

    def get(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch at `indices` (a CPU tensor), on the device."""
        if self.on_device:
            index = indices.to(self.device, non_blocking=True)
            return self.images.index_select(0, index), self.targets.index_select(0, index)
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
        """Start copying the batch at `indices` in the background (streaming only)."""
        if not self.on_device:
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
        if not self.on_device:
            self._pool.shutdown(wait=True)
