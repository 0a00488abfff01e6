"""The built-in ``act`` loss head: the LM loss plus the Q-halt (and Q-continue) losses of
an :class:`~rrcore.model.act.ACTModel` step, and the metrics of the rows that halted."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rrcore.base.validators import in_range, non_negative
from rrcore.contracts.protocols import Batch
from rrcore.data.format import IGNORE_LABEL
from rrcore.model.act import ACTModel
from rrcore.model.carry import Carry, StepOutput
from rrcore.model.losses import LOSS_FUNCTIONS
from rrcore.model.metrics import PER_EXAMPLE, PER_HALTED


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

    Returns sums over this rank's rows (see :class:`rrcore.contracts.protocols.LossHead`);
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

    def forward(self, carry: Carry, batch: Batch, exploration: Tensor | None = None) -> StepOutput:
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

        return StepOutput(carry, loss, metrics, outputs, carry.halted.all())
