"""A loss head's ACT step compiled as one graph (:class:`CompiledStep`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from rrcore.model.carry import Carry, StepOutput

if TYPE_CHECKING:
    from rrcore.contracts.protocols import Batch


class CompiledStep:
    """A loss head's ACT step — carry reset, inner recurrence, halting, Q targets, loss
    and metrics — as one ``torch.compile`` graph (its backward pass compiled with it).

    ``compile=False`` calls the loss head as it is. ``cuda_graphs`` also captures the
    compiled step in CUDA graphs (``mode="reduce-overhead"``): shapes are static, so
    each step replays one recorded graph instead of launching every kernel from
    Python. The graph's outputs live in its memory pool until the next replay
    overwrites them, so the carry, outputs and metrics handed back are copies.
    Call it like the loss head: ``step(carry, batch, exploration)``.
    """

    def __init__(self, loss_head: nn.Module, *, compile: bool, cuda_graphs: bool = False) -> None:
        self.loss_head = loss_head
        self.compiled = compile
        self.cuda_graphs = compile and cuda_graphs
        self.fn = (
            torch.compile(loss_head, dynamic=False, mode="reduce-overhead" if self.cuda_graphs else None)
            if compile
            else loss_head
        )

    def __call__(self, carry: Carry, batch: Batch, exploration: Tensor | None = None) -> StepOutput:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        carry, loss, metrics, outputs, all_halted = self.fn(carry, batch, exploration)
        if self.cuda_graphs:
            carry, metrics, outputs, all_halted = tree_map(
                lambda t: t.detach().clone() if isinstance(t, Tensor) else t, (carry, metrics, outputs, all_halted)
            )
        return StepOutput(carry.detach(), loss, metrics, outputs, all_halted)
