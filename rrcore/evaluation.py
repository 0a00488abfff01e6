"""What evaluators receive (:class:`EvalContext`, defined with the other contracts in
:mod:`rrcore.protocols`), and helpers for gathering their results across ranks."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from rrcore.distributed import is_distributed
from rrcore.protocols import EvalContext

__all__ = ["EvalContext", "all_reduce_sum", "gather_to_rank0"]


def gather_to_rank0(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` as a list on rank 0 (``None`` elsewhere); works without
    torch.distributed too (a list of one)."""
    if not is_distributed():
        return [obj]
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op on one process) and return it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
