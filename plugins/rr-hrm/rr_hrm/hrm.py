"""The Hierarchical Reasoning Model (Wang et al., 2025, arXiv 2506.21734), one ACT step.

Two recurrent transformer modules share one latent sequence layout: a fast
low-level module L and a slow high-level module H. Within one ACT step
("segment") L updates ``L_cycles`` times per H update, from its own state and
the sum of H's state and the input embedding; H then updates from its state and
L's. Only the last L update and the last H update are differentiated (the
paper's one-step gradient approximation); everything before runs under
``torch.no_grad``. Halting with Q-halt and the bootstrapped Q-continue target is
the core's :class:`rrcore.model.act.ACTModel`; HRM declares ``predicts_q_continue``, so
``[act] q_continue`` is true unless set otherwise (which validation rejects).

Analysis: ``with model.recording_states() as records:`` stores detached copies
of z_L and z_H after every update (:class:`rrcore.contracts.protocols.RecordsStates`).
"""

from __future__ import annotations

import attrs
import torch

from rrcore.api import (
    Batch,
    InjectedStack,
    InnerCarry,
    ModelContext,
    Outputs,
    PostNormBlock,
    ReasoningHeads,
    ReasoningModel,
    ReasoningModelConfig,
    StateRecorder,
    at_least,
    non_negative,
    record_state,
)


@attrs.define
class HRMConfig(ReasoningModelConfig):
    """The ``[model]`` keys of ``plugin = "hrm"``: the shared keys
    (:class:`rrcore.model.model_kit.ReasoningModelConfig`) and these.

    ``H_cycles`` H updates per ACT step, each after ``L_cycles`` L updates;
    ``H_layers`` / ``L_layers`` post-norm blocks per module. ``eval_extra_H_cycles``
    more H cycles (each with its ``L_cycles``) per ACT step in eval mode: inference-time
    scaling, thinking longer than in training (0 = as trained).
    """

    H_layers: int = attrs.field(default=4, validator=at_least(1))
    L_layers: int = attrs.field(default=4, validator=at_least(1))
    H_cycles: int = attrs.field(default=2, validator=at_least(1))
    L_cycles: int = attrs.field(default=2, validator=at_least(1))
    eval_extra_H_cycles: int = attrs.field(default=0, validator=non_negative)


class HRM(StateRecorder, ReasoningModel):
    """HRM's inner recurrence (:class:`rrcore.contracts.protocols.Model`): one ACT step per call.

    The carry holds ``z_H`` and ``z_L``, (B, puzzle_emb_len + seq_len, hidden_size)
    in the forward dtype; rows are reset to the fixed initial states ``H_init`` /
    ``L_init`` (buffers drawn once with std 1, as in the paper's code).
    ``recording_states()`` records ``z_L`` (H_cycles * L_cycles per step) and ``z_H``
    (H_cycles per step); record in eval mode (in training with ``[act] q_continue`` the
    core calls the model twice per ACT step).
    """

    predicts_q_continue = True  # halts on q_halt > q_continue; [act] q_continue follows it

    def __init__(self, config: HRMConfig, context: ModelContext) -> None:
        super().__init__(config, context)
        self.H_level = InjectedStack(PostNormBlock.from_config(config) for _ in range(config.H_layers))
        self.L_level = InjectedStack(PostNormBlock.from_config(config) for _ in range(config.L_layers))
        self.heads = ReasoningHeads(config.hidden_size, context.metadata.vocab_size, self.embed_input.puzzle_emb_len)
        self.register_carry(z_H="H_init", z_L="L_init")

    # -- one ACT step ------------------------------------------------------------------

    def forward(self, carry: InnerCarry, batch: Batch) -> tuple[InnerCarry, Outputs]:
        """``H_cycles`` x ``L_cycles`` updates; gradient only through the last L and H update."""
        H_cycles, L_cycles = self.config.H_cycles, self.config.L_cycles
        if not self.training:
            H_cycles += self.config.eval_extra_H_cycles
        rotary = self.embed_input.rotary()
        x = self.embed_input(batch["inputs"], batch["puzzle_identifiers"])  # (B, P + L, D)
        z_H, z_L = carry["z_H"], carry["z_L"]
        record = self.new_state_record()

        with torch.no_grad():
            for step in range(H_cycles * L_cycles - 1):
                z_L = self.L_level(z_L, z_H + x, rotary)
                record_state(record, "z_L", z_L)
                if (step + 1) % L_cycles == 0:
                    z_H = self.H_level(z_H, z_L, rotary)
                    record_state(record, "z_H", z_H)

        # One-step gradient approximation: differentiate only the last update of each module.
        z_L = self.L_level(z_L, z_H + x, rotary)
        z_H = self.H_level(z_H, z_L, rotary)
        record_state(record, "z_L", z_L)
        record_state(record, "z_H", z_H)

        outputs = self.heads(z_H)
        return {"z_H": z_H.detach(), "z_L": z_L.detach()}, outputs
