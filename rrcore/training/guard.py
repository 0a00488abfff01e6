"""The NaN guard: a run whose loss stops being finite ends without saving it, naming the step."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from rrcore.contracts.errors import TrainingError


class NonFiniteGuard:
    """Keeps on the device the first step whose loss was NaN or infinite (-1: none), so
    watching costs no host synchronisation; :meth:`check` reads it back at log steps and
    before every save."""

    def __init__(self, device: torch.device) -> None:
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)

    def watch(self, loss: torch.Tensor, step: int) -> None:
        first = self.first_bad_step
        self.first_bad_step = torch.where((first < 0) & ~torch.isfinite(loss), torch.full_like(first, step), first)

    def check(self, world_size: int, last_checkpoint: Path | None) -> None:
        """Raise :class:`TrainingError` when any rank saw a non-finite loss."""
        flag = self.first_bad_step.clone()
        if world_size > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        bad = int(flag.item())  # the one wait for the device
        if bad >= 0:
            where = (
                f"the last good checkpoint is {last_checkpoint}"
                if last_checkpoint
                else "no checkpoint was saved before it"
            )
            raise TrainingError(
                f"loss became NaN or infinite at step {bad}; stopped without saving; {where} "
                f"(resume with --resume latest and a lower train.lr or train.grad_clip)"
            )
