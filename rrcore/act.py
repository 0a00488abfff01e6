"""Adaptive computation time, once for every architecture.

:class:`ACTModel` wraps an architecture's inner recurrence (:class:`rrcore.protocols.Model`)
and owns what HRM, TRM and URM share: resetting the carry where a row halted,
feeding it the next example, counting steps, halting on the Q-head, exploration,
and the bootstrapped Q-continue target. :class:`ACTLossHead` turns its outputs
into the training loss and metrics.

One call of :meth:`ACTModel.forward` is one ACT step ("supervision step") for the
whole batch; rows that halt take a new example at the next call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from rrcore.metrics import PER_EXAMPLE, PER_HALTED
from rrcore.nn import IGNORE_LABEL, LOSS_FUNCTIONS
from rrcore.protocols import Batch, InnerCarry, Model, Outputs
from rrcore.validators import STEP_COUNT_MAX, fraction, in_range, non_negative


@attrs.define
class ACTConfig:
    """The ``[act]`` section of an experiment.

    ``halt_max_steps``: ACT steps before a row is forced to halt (evaluation always
    runs this many). ``halt_exploration_prob``: probability that a row gets a random
    minimum number of steps (2..halt_max_steps) before it may halt.
    ``q_continue``: also predict Q-continue, halt when q_halt > q_continue, and
    train it towards the bootstrapped target (HRM; one extra forward pass per step).
    Without it a row halts when q_halt > 0 (TRM, URM). In an experiment file it
    follows the model's ``predicts_q_continue`` when left out, and a value that
    contradicts the model is refused (:func:`rrcore.config.resolve`).
    """

    halt_max_steps: int = attrs.field(default=16, validator=in_range(1, STEP_COUNT_MAX))
    halt_exploration_prob: float = attrs.field(default=0.1, validator=fraction)
    q_continue: bool = False


class Carry(NamedTuple):
    """The carry between ACT steps (``carry`` in :mod:`rrcore.protocols`): latent state, step counts,
    halted mask and the examples each row is working on.

    A named tuple, so ``torch.compile`` and CUDA graphs see a plain tree of tensors.
    """

    inner: InnerCarry
    steps: Tensor  # (B,) int32
    halted: Tensor  # (B,) bool
    current_data: Batch

    def map(self, fn: Callable[[Tensor], Tensor]) -> Carry:
        """The carry with ``fn`` applied to every tensor."""
        return Carry(
            {k: fn(v) for k, v in self.inner.items()},
            fn(self.steps),
            fn(self.halted),
            {k: fn(v) for k, v in self.current_data.items()},
        )

    def detach(self) -> Carry:
        return self.map(Tensor.detach)

    def to(self, device: torch.device) -> Carry:
        return self.map(lambda t: t.to(device))


def reset_rows(reset: Tensor, carry: InnerCarry, initial: dict[str, Tensor | float]) -> InnerCarry:
    """``carry`` with the rows where ``reset`` (B,) is True replaced by ``initial[name]``
    (broadcast: e.g. a fixed (D,) state for every position, or a number), cast to the
    carry's dtype.

    The body of :meth:`rrcore.model_kit.ReasoningModel.reset_carry`; ``torch.where``, so no
    host synchronisation.
    """
    return {
        name: torch.where(_rows(reset, state), _cast(initial[name], state.dtype), state)
        for name, state in carry.items()
    }


def _cast(value: Tensor | float, dtype: torch.dtype) -> Tensor | float:
    return value.to(dtype) if isinstance(value, Tensor) else value


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    """Reshape a (B,) mask to broadcast against ``like`` (B, ...)."""
    return mask.view(-1, *([1] * (like.ndim - 1)))


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
        (:class:`rrcore.inference.TrajectoryNoise`) calls it before the step, adds noise
        to the fresh latent and clears ``halted``, so the step keeps that latent.
        """
        halted = carry.halted
        return Carry(
            self.inner.reset_carry(halted, carry.inner),
            torch.where(halted, 0, carry.steps),
            halted,
            {k: torch.where(_rows(halted, v), batch[k], v) for k, v in carry.current_data.items()},
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
                q_halt = outputs["q_halt_logits"]
                if self.config.q_continue:
                    halted = halted | (q_halt > outputs["q_continue_logits"])
                else:
                    halted = halted | (q_halt > 0)
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


@attrs.define
class ACTLossConfig:
    """The ``[loss]`` section for the built-in ``act`` loss head.

    ``loss_type``: ``stablemax_cross_entropy`` (float64, the papers' default) or
    ``softmax_cross_entropy``. ``q_loss_weight``: weight of the Q-halt (+ Q-continue)
    BCE terms relative to the LM loss (0.5 in the papers). The Q-halt term is a binary
    cross-entropy of q_halt against "the whole answer is right" at this step; with
    ``[act] q_continue = false`` it is the only halting loss (TRM; the fast Sudoku recipe
    weighs it 0.05). ``label_smoothing`` ε: the LM loss's target puts ``1 - ε`` on the
    label and ``ε / V`` on each of the V classes (0: none, the papers').
    ``later_step_weight`` w: a row's LM loss at its ACT step ``n`` (1-based) is weighted
    ``w ** (n - 1)``, so later supervision steps count less (CGAR's decaying weights;
    1: every step alike, the papers').
    """

    loss_type: Literal["stablemax_cross_entropy", "softmax_cross_entropy"] = "stablemax_cross_entropy"
    q_loss_weight: float = attrs.field(default=0.5, validator=non_negative)
    label_smoothing: float = attrs.field(default=0.0, validator=in_range(0, 1, high_open=True))
    later_step_weight: float = attrs.field(default=1.0, validator=in_range(0, 1))


class ACTLossHead(nn.Module):
    """LM loss + Q-halt BCE against "whole sequence correct" (+ Q-continue BCE).

    Returns sums over this rank's rows (see :class:`rrcore.protocols.LossHead`);
    accuracy metrics count only rows that halted at this step, ``count`` of them.
    """

    metric_reductions = {
        "lm_loss": PER_EXAMPLE,
        "q_halt_loss": PER_EXAMPLE,
        "q_continue_loss": PER_EXAMPLE,
        "accuracy": PER_HALTED,
        "exact_accuracy": PER_HALTED,
        "q_halt_accuracy": PER_HALTED,
        "steps": PER_HALTED,
    }

    def __init__(self, model: ACTModel, config: ACTLossConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.config = config or ACTLossConfig()
        self.loss_fn = LOSS_FUNCTIONS[self.config.loss_type]

    def initial_carry(self, batch: Batch) -> Carry:
        return self.model.initial_carry(batch)

    def forward(
        self,
        carry: Carry,
        batch: Batch,
        exploration: Tensor | None = None,
    ) -> tuple[Carry, Tensor, dict[str, Tensor], Outputs, Tensor]:
        carry, outputs = self.model(carry, batch, exploration)
        labels = carry.current_data["labels"]
        logits = outputs["logits"]

        with torch.no_grad():
            preds = logits.argmax(-1)
            outputs["preds"] = preds
            mask = labels != IGNORE_LABEL
            counts = mask.sum(-1)
            token_correct = mask & (preds == labels)
            seq_correct = token_correct.sum(-1) == counts
            valid = carry.halted & (counts > 0)
            divisor = counts.clamp_min(1)
            metrics = {
                "count": valid.sum(),
                "accuracy": torch.where(valid, token_correct.sum(-1) / divisor, 0).sum(),
                "exact_accuracy": (valid & seq_correct).sum(),
                "q_halt_accuracy": (valid & ((outputs["q_halt_logits"] >= 0) == seq_correct)).sum(),
                "steps": torch.where(valid, carry.steps, 0).sum(),
            }

        smoothing = self.config.label_smoothing
        token_loss = (
            self.loss_fn(logits, labels, label_smoothing=smoothing) if smoothing else self.loss_fn(logits, labels)
        )
        row_loss = token_loss / divisor.unsqueeze(-1)
        if self.config.later_step_weight != 1.0:
            weight = torch.pow(self.config.later_step_weight, (carry.steps - 1).to(row_loss.dtype))
            row_loss = row_loss * weight.unsqueeze(-1)
        lm_loss = row_loss.sum().to(torch.float32)
        q_halt_loss = F.binary_cross_entropy_with_logits(
            outputs["q_halt_logits"].to(torch.float32), seq_correct.to(torch.float32), reduction="sum"
        )
        loss = lm_loss + self.config.q_loss_weight * q_halt_loss
        metrics["lm_loss"] = lm_loss.detach()
        metrics["q_halt_loss"] = q_halt_loss.detach()
        if "target_q_continue" in outputs:
            q_continue_loss = F.binary_cross_entropy_with_logits(
                outputs["q_continue_logits"].to(torch.float32),
                outputs["target_q_continue"].to(torch.float32),
                reduction="sum",
            )
            loss = loss + self.config.q_loss_weight * q_continue_loss
            metrics["q_continue_loss"] = q_continue_loss.detach()

        return carry, loss, metrics, outputs, carry.halted.all()


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

    def __call__(
        self,
        carry: Carry,
        batch: Batch,
        exploration: Tensor | None = None,
    ) -> tuple[Carry, Tensor, dict[str, Tensor], Outputs, Tensor]:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        carry, loss, metrics, outputs, all_halted = self.fn(carry, batch, exploration)
        if self.cuda_graphs:
            carry, metrics, outputs, all_halted = tree_map(
                lambda t: t.detach().clone() if isinstance(t, Tensor) else t, (carry, metrics, outputs, all_halted)
            )
        return carry.detach(), loss, metrics, outputs, all_halted
