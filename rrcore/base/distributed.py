"""Process-group set-up: one process, or ``torchrun`` (NCCL on CUDA, gloo on CPU)."""

from __future__ import annotations

import os
from typing import Any

import attrs
import torch
import torch.distributed as dist
from torch.utils._pytree import tree_flatten, tree_unflatten


@attrs.frozen
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device = 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(preference: str = "auto") -> DistInfo:
    """Join the process group when started by torchrun (``WORLD_SIZE`` set), else run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, device)


def is_distributed() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def from_rank0(value: Any) -> Any:
    """Rank 0's ``value`` (any picklable object) on every rank; one process: ``value``."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_floats(value: float, device: torch.device) -> list[float]:
    """``value`` from every rank, in rank order (one process: ``[value]``)."""
    if not is_distributed():
        return [value]
    mine = torch.tensor([value], dtype=torch.float64, device=device)
    everyone = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, mine)
    return [float(t.item()) for t in everyone]


def all_reduce_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Sum gradients over ranks in one flat collective (no-op on one process)."""
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def regroup_rows(parts: list[Any], count: int) -> list[Any]:
    """Re-split batch-first state into ``count`` equal parts covering the same rows.

    ``parts``: trees (dicts) of tensors whose first dimension is the batch, one per
    (rank, micro-batch) of the global batch, in global row order. Returns ``count``
    trees of the same shape, the rows of the global batch cut anew, e.g. the ACT
    carries of 1 rank regrouped for 2 ranks.
    """
    flat = [tree_flatten(part) for part in parts]
    spec = flat[0][1]
    if any(other != spec for _, other in flat[1:]):
        raise ValueError("parts do not share one structure")
    columns = [torch.cat(tensors) for tensors in zip(*(leaves for leaves, _ in flat))]
    rows = columns[0].shape[0] if columns else 0
    if rows % count:
        raise ValueError(f"{rows} rows do not split into {count} equal parts")
    size = rows // count
    return [tree_unflatten([column[i * size : (i + 1) * size] for column in columns], spec) for i in range(count)]


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
