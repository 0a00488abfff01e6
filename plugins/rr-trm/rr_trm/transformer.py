"""A plain transformer baseline with TRM's blocks, embeddings and heads, no recursion.

Each ACT step runs ``num_layers`` blocks once on the input embedding. Nothing
is carried between steps except the last hidden state (for inspection; it is
not fed back), so every ACT step of a row gives the same prediction: with
``halt_max_steps = 1`` this is an ordinary encoder, and with more steps it
shows what the recurrence of TRM adds at equal parameters or equal depth.
"""

from __future__ import annotations

from typing import Literal

import attrs
from torch import nn

from rr_trm.trm import make_block
from rrcore.api import (
    Batch,
    InnerCarry,
    ModelContext,
    Outputs,
    ReasoningHeads,
    ReasoningModel,
    ReasoningModelConfig,
    at_least,
    non_negative,
)


@attrs.define
class TransformerConfig(ReasoningModelConfig):
    """The ``[model]`` keys of ``plugin = "transformer"``: the shared keys
    (:class:`rrcore.model.model_kit.ReasoningModelConfig`), TRM's ``mlp_t`` / ``mlp_t_norm``
    and ``num_layers`` blocks instead of cycles."""

    num_layers: int = attrs.field(default=8, validator=at_least(1))
    mlp_t: bool = False
    mlp_t_norm: Literal["positions", "channels"] = "positions"
    puzzle_emb_len: int = attrs.field(default=16, validator=non_negative)  # TRM's prefix


class Transformer(ReasoningModel):
    """``num_layers`` post-norm blocks on the input embedding, with the ACT interface.

    The carry's ``hidden`` is the last hidden state, for inspection only: it restarts at zero.
    """

    def __init__(self, config: TransformerConfig, context: ModelContext) -> None:
        super().__init__(config, context, input_name="embed")
        self.blocks = nn.ModuleList([make_block(config, self.embed.total_len) for _ in range(config.num_layers)])
        self.heads = ReasoningHeads(config.hidden_size, context.metadata.vocab_size, self.embed.puzzle_emb_len)
        self.register_carry(hidden=None)

    def forward(self, carry: InnerCarry, batch: Batch) -> tuple[InnerCarry, Outputs]:
        rotary = self.embed.rotary()
        hidden = self.embed(batch["inputs"], batch["puzzle_identifiers"])  # (B, S, D)
        for block in self.blocks:
            hidden = block(hidden, rotary)
        return {"hidden": hidden.detach()}, self.heads(hidden)
