"""Adaptive computation time, once for every architecture.

:class:`ACTModel` wraps an architecture's inner recurrence (:class:`rrcore.contracts.protocols.Model`)
and owns what HRM, TRM and URM share: resetting the carry where a row halted,
feeding it the next example, counting steps, halting on the Q-head, exploration,
and the bootstrapped Q-continue target. One call of :meth:`ACTModel.forward` is one
ACT step ("supervision step") for the whole batch; rows that halt take a new example
at the next call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from rrcore.model.carry import Carry, broadcast_rows

if TYPE_CHECKING:
    from rrcore.contracts.experiment import ACTConfig
    from rrcore.contracts.protocols import Batch, Model, Outputs


class ACTModel(nn.Module):
    """An inner recurrence plus the ACT halting loop.

    Exploration noise is drawn from ``generator`` for the *global* batch of
    ``global_batch_size`` rows and sliced to the caller's rows (:meth:`exploration`'s
    ``row_offset``), so a run's halting decisions do not depend on how many ranks or
    micro-batches share the batch. Without a ``global_batch_size`` each draw covers
    just the rows asked for; without a ``generator`` it comes from torch's global one.
    """

    def __init__(
        self,
        inner: Model,
        config: ACTConfig,
        *,
        generator: torch.Generator | None = None,
        global_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.config = config
        self.exploration_generator = generator
        self.global_batch_size = global_batch_size

    def initial_carry(self, batch: Batch) -> Carry:
        """A carry whose rows are all halted, so the first step loads ``batch``."""
        batch_size = batch["inputs"].shape[0]
        device = batch["inputs"].device
        return Carry(
            inner=self.inner.initial_carry(batch),
            steps=torch.zeros(batch_size, dtype=torch.int32, device=device),
            halted=torch.ones(batch_size, dtype=torch.bool, device=device),
            current_data={k: torch.zeros_like(v) for k, v in batch.items()},
        )

    @property
    def explores(self) -> bool:
        """Whether training steps take an ``exploration`` draw (see :meth:`exploration`)."""
        return self.config.halt_exploration_prob > 0 and self.config.halt_max_steps > 1

    def exploration(self, batch_size: int, device: torch.device, row_offset: int = 0) -> Tensor:
        """Minimum steps before each of ``batch_size`` rows may halt (0: no minimum).

        Drawn for the whole global batch and sliced to the rows from ``row_offset`` (this
        rank's micro-batch), so halting does not depend on the number of ranks. The
        trainer calls it outside the compiled step (a generator cannot be traced)
        and passes the result to :meth:`forward`.
        """
        total = self.global_batch_size or batch_size
        draw = torch.rand(total, generator=self.exploration_generator, device=device)
        steps = torch.randint(
            2, self.config.halt_max_steps + 1, (total,), generator=self.exploration_generator, device=device
        )
        rows = slice(row_offset, row_offset + batch_size)
        return torch.where(draw[rows] < self.config.halt_exploration_prob, steps[rows], 0)

    def load_halted(self, carry: Carry, batch: Batch) -> Carry:
        """``carry`` with its halted rows started on ``batch``'s rows: latent reset to the
        initial states, step count 0, the new example loaded (``halted`` left as it is).

        The start of every :meth:`forward`. Test-time trajectory noise
        (:class:`rrcore.evaluation.pool.TrajectoryNoise`) calls it before the step, adds noise
        to the fresh latent and clears ``halted``, so the step keeps that latent.
        """
        halted = carry.halted
        return Carry(
            self.inner.reset_carry(halted, carry.inner),
            torch.where(halted, 0, carry.steps),
            halted,
            {k: torch.where(broadcast_rows(halted, v), batch[k], v) for k, v in carry.current_data.items()},
        )

    def forward(self, carry: Carry, batch: Batch, exploration: Tensor | None = None) -> tuple[Carry, Outputs]:
        """One ACT step. ``exploration``: :meth:`exploration`'s draw for this step
        (training only); drawn here when omitted, which ``torch.compile`` cannot trace."""
        inner, steps, _, current = self.load_halted(carry, batch)
        if self.training and self.explores and exploration is None:
            exploration = self.exploration(steps.shape[0], steps.device)

        inner, outputs = self.inner(inner, current)

        with torch.no_grad():
            steps = steps + 1
            is_last = steps >= self.config.halt_max_steps
            halted = is_last
            if self.training and self.config.halt_max_steps > 1:
                halted = halted | q_says_halt(outputs, self.config.q_continue)
                if self.explores:
                    halted = halted & (steps >= exploration)
                if self.config.q_continue:
                    # Bootstrapped target (HRM): the value of continuing is the best of
                    # halting or continuing at the next step, or halting if none is left.
                    _, next_outputs = self.inner(inner, current)
                    next_halt = next_outputs["q_halt_logits"]
                    next_continue = next_outputs["q_continue_logits"]
                    outputs["target_q_continue"] = torch.sigmoid(
                        torch.where(is_last, next_halt, torch.maximum(next_halt, next_continue))
                    )

        return Carry(inner, steps, halted, current), outputs


def q_says_halt(outputs: dict[str, Tensor], q_continue: bool) -> Tensor:
    """(B,) bool: the Q-head's halting decision (q_halt > q_continue when Q-continue is
    learned, else q_halt > 0), in training and in adaptive evaluation alike."""
    q_halt = outputs["q_halt_logits"]
    if q_continue:
        return q_halt > outputs["q_continue_logits"]
    return q_halt > 0
