"""Sign-SGD for the sparse puzzle embeddings."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from rrcore.base.distributed import is_distributed
from rrcore.model.puzzle_io import SparsePuzzleEmbedding


def _sign_sgd_rows(weights: Tensor, ids: Tensor, grad: Tensor, lr: float, weight_decay: float) -> None:
    """Update the rows ``ids`` of ``weights`` by the sign of their summed gradients.

    Written without ``unique`` (whose output size is data-dependent and forces a host
    synchronisation on CUDA): sorted ids are grouped into fixed-size segments, and the
    spare segments rewrite the first row with its own new value, so every write is
    deterministic.
    """
    n = ids.shape[0]
    sorted_ids, order = ids.sort()
    starts = torch.ones(n, dtype=torch.bool, device=ids.device)
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    segment = starts.cumsum(0) - 1  # (n,) segment of each sorted row
    summed = torch.zeros(n, grad.shape[1], dtype=grad.dtype, device=grad.device)
    summed.index_add_(0, segment, grad[order])
    used = torch.zeros(n, dtype=torch.bool, device=ids.device).index_fill_(0, segment, True)
    segment_ids = torch.zeros_like(sorted_ids).scatter_(0, segment, sorted_ids)
    segment_ids = torch.where(used, segment_ids, sorted_ids[0])
    rows = weights[segment_ids] * (1.0 - lr * weight_decay) - lr * torch.sign(summed)
    rows = torch.where(used.unsqueeze(-1), rows, rows[:1])  # spare segments repeat row 0
    weights.index_put_((segment_ids,), rows)


class SignSGD(torch.optim.Optimizer):
    """Sign-SGD with decoupled weight decay for :class:`SparsePuzzleEmbedding` tables.

    Gradients of the batch rows are gathered from every rank, summed per identifier,
    and the table rows move by ``-lr * sign(grad)`` after ``weights *= 1 - lr * wd``.
    Rows not in any rank's batch are untouched (weight decay included).
    """

    def __init__(self, embeddings: list[SparsePuzzleEmbedding], lr: float, weight_decay: float = 0.0) -> None:
        self.embeddings = embeddings
        self._pending: list[list[tuple[Tensor, Tensor]]] = [[] for _ in embeddings]
        params = [e.local_weights for e in embeddings]
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def accumulate(self) -> None:
        """Keep the current micro-batch's rows and gradients for the next :meth:`step`
        (gradient accumulation refills ``local_weights`` with other rows)."""
        for pending, embedding in zip(self._pending, self.embeddings):
            if embedding.local_weights.grad is not None:
                pending.append((embedding.local_ids.clone(), embedding.local_weights.grad.clone()))
                embedding.local_weights.grad = None

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D401 - torch signature
        group = self.param_groups[0]
        for pending, embedding in zip(self._pending, self.embeddings):
            parts = list(pending)
            if embedding.local_weights.grad is not None:
                parts.append((embedding.local_ids, embedding.local_weights.grad))
            pending.clear()
            if not parts:
                continue
            ids = torch.cat([i for i, _ in parts])
            grad = torch.cat([g for _, g in parts])
            if is_distributed():
                grads = [torch.empty_like(grad) for _ in range(dist.get_world_size())]
                all_ids = [torch.empty_like(ids) for _ in range(dist.get_world_size())]
                dist.all_gather(grads, grad.contiguous())
                dist.all_gather(all_ids, ids.contiguous())
                grad, ids = torch.cat(grads), torch.cat(all_ids)
            _sign_sgd_rows(embedding.weights, ids, grad, group["lr"], group["weight_decay"])
        return None
