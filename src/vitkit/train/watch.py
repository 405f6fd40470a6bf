"""What the training loop watches without waiting on the device: the loss (summed on the
device, read at log steps), and the wall clock (images/s per logging window)."""

from __future__ import annotations

import time
from typing import Any

import torch

from .distributed import DistInfo, mean_across, min_across


class LossWatch:
    """The training loss kept on the device: its sum and count since the last log, and the
    first step whose loss was not finite (-1: none). Read only by `read`, the loop's one
    synchronisation with the host."""

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device)
        self.count = 0
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def add(self, loss: torch.Tensor, step: int) -> None:
        self.total += loss
        self.count += 1
        bad = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, step), self.first_bad)

    def read(self, dist: DistInfo) -> tuple[float, int]:
        """(mean loss since the last read over all ranks, first non-finite step or -1), and
        start a new window."""
        mean = float(mean_across(self.total / max(self.count, 1), dist))
        first = self.first_bad_step(dist)
        self.total.zero_()
        self.count = 0
        return mean, first

    def first_bad_step(self, dist: DistInfo) -> int:
        """The first step with a non-finite loss on any rank, or -1."""
        never = torch.full_like(self.first_bad, 2**62)
        first = int(min_across(torch.where(self.first_bad < 0, never, self.first_bad), dist))
        return -1 if first == 2**62 else first

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total.detach().cpu(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total.copy_(state["total"])
        self.count = int(state["count"])


class Clock:
    """Wall time since the start, and images/s over the current logging window."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.images = 0
        self.window = (self.start, 0)

    def tick(self, batch: int) -> None:
        self.images += batch

    def rate(self) -> float:
        now = time.perf_counter()
        return (self.images - self.window[1]) / max(now - self.window[0], 1e-9)

    def new_window(self) -> None:
        self.window = (time.perf_counter(), self.images)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
