"""The state carried between ACT steps (:class:`Carry`), resetting rows of it, and what one
step of a loss head returns (:class:`StepOutput`). Named tuples, so ``torch.compile`` and CUDA
graphs see plain trees of tensors."""

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor


class Carry(NamedTuple):
    """The carry between ACT steps (``carry`` in :mod:`rrcore.contracts.protocols`): latent state,
    step counts, halted mask and the examples each row is working on."""

    inner: dict[str, Tensor]  # the model's states (InnerCarry in rrcore.contracts.protocols)
    steps: Tensor  # (B,) int32
    halted: Tensor  # (B,) bool
    current_data: dict[str, Tensor]  # a Batch

    def map(self, fn: Callable[[Tensor], Tensor]) -> "Carry":
        """The carry with ``fn`` applied to every tensor."""
        return Carry(
            {k: fn(v) for k, v in self.inner.items()},
            fn(self.steps),
            fn(self.halted),
            {k: fn(v) for k, v in self.current_data.items()},
        )

    def detach(self) -> "Carry":
        return self.map(Tensor.detach)

    def to(self, device: torch.device) -> "Carry":
        return self.map(lambda t: t.to(device))


class StepOutput(NamedTuple):
    """What one ACT step of a loss head returns (:class:`rrcore.contracts.protocols.LossHead`).

    ``loss``: 0-dim, summed over this rank's rows; ``metrics``: 0-dim sums over rows
    (``count``: the rows that halted at this step); ``all_halted``: 0-dim bool.
    """

    carry: Carry
    loss: Tensor
    metrics: dict[str, Tensor]
    outputs: dict[str, Tensor]
    all_halted: Tensor


def reset_rows(reset: Tensor, carry: dict[str, Tensor], initial: dict[str, Tensor | float]) -> dict[str, Tensor]:
    """``carry`` with the rows where ``reset`` (B,) is True replaced by ``initial[name]``
    (broadcast: e.g. a fixed (D,) state for every position, or a number), cast to the
    carry's dtype.

    The body of :meth:`rrcore.model.model_kit.ReasoningModel.reset_carry`; ``torch.where``, so no
    host synchronisation.
    """
    return {
        name: torch.where(broadcast_rows(reset, state), _cast(initial[name], state.dtype), state)
        for name, state in carry.items()
    }


def _cast(value: Tensor | float, dtype: torch.dtype) -> Tensor | float:
    return value.to(dtype) if isinstance(value, Tensor) else value


def broadcast_rows(mask: Tensor, like: Tensor) -> Tensor:
    """Reshape a (B,) mask to broadcast against ``like`` (B, ...)."""
    return mask.view(-1, *([1] * (like.ndim - 1)))
