"""SIGTERM and SIGINT stop a run cleanly: it finishes its step, saves a checkpoint and says
how to continue."""

from __future__ import annotations

import signal
from typing import Any

import torch
import torch.distributed as dist


class StopSignals:
    """Between :meth:`install` and :meth:`restore` SIGTERM and SIGINT only record ``signum``;
    the loop asks :meth:`requested` after each step."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        def request_stop(signum: int, frame: Any) -> None:
            self.signum = signum

        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, request_stop)
            except ValueError:  # not the main thread
                pass

    def restore(self) -> None:
        """Give SIGTERM and SIGINT back to their previous handlers."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def requested(self, world_size: int, device: torch.device, sync: bool) -> bool:
        """Whether to stop now. Under torchrun the ranks agree at ``sync`` steps only."""
        if world_size == 1:
            return self.signum is not None
        if not sync:
            return False
        # Every rank stops, and learns the signal (for its exit code) even if only one got it.
        signum = torch.tensor([self.signum or 0], device=device)
        dist.all_reduce(signum, op=dist.ReduceOp.MAX)
        self.signum = int(signum.item()) or None
        return self.signum is not None
