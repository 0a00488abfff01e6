"""What evaluators receive, and helpers for gathering their results across ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
import torch.distributed as dist

from rrcore.data import DatasetMetadata
from rrcore.distributed import is_distributed


@attrs.define
class EvalContext:
    """Passed to evaluator factories.

    ``data_dir`` is the split folder being evaluated (``.../test``), so evaluators can
    read files their builder wrote beside the arrays (ratings, augmentation maps);
    ``output_dir`` is where they write predictions and submissions (rank 0).
    """

    metadata: DatasetMetadata
    data_dir: Path
    output_dir: Path
    rank: int = 0
    world_size: int = 1
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))


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
