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
import torch
from torch import Tensor, nn

from rr_trm.trm import make_block
from rrcore.nn import PositionEncoding, PuzzleInput, ReasoningHeads
from rrcore.protocols import Batch, InnerCarry, ModelContext, Outputs
from rrcore.validators import at_least, non_negative, positive


@attrs.define
class TransformerConfig:
    """The ``[model]`` keys of ``plugin = "transformer"`` (TRM's, with ``num_layers``
    blocks instead of cycles)."""

    hidden_size: int = attrs.field(default=512, validator=at_least(1))
    num_heads: int = attrs.field(default=8, validator=at_least(1))
    expansion: float = attrs.field(default=4.0, validator=positive)
    num_layers: int = attrs.field(default=8, validator=at_least(1))
    puzzle_emb_ndim: int = attrs.field(default=512, validator=non_negative)
    puzzle_emb_len: int = attrs.field(default=16, validator=non_negative)
    pos_encodings: PositionEncoding = "rope"
    mlp_t: bool = False
    mlp_t_norm: Literal["positions", "channels"] = "positions"
    rms_norm_eps: float = attrs.field(default=1e-5, validator=positive)
    rope_theta: float = attrs.field(default=10000.0, validator=positive)
    attention_backend: Literal["auto", "sdpa", "flash"] = "auto"


class Transformer(nn.Module):
    """``num_layers`` post-norm blocks on the input embedding, with the ACT interface."""

    def __init__(self, config: TransformerConfig, context: ModelContext) -> None:
        super().__init__()
        metadata = context.metadata
        self.config = config
        self.forward_dtype = context.forward_dtype
        self.embed = PuzzleInput.from_config(config, context)
        self.blocks = nn.ModuleList([
            make_block(hidden_size=config.hidden_size, num_heads=config.num_heads,
                       expansion=config.expansion, seq_len=self.embed.total_len, mlp_t=config.mlp_t,
                       mlp_t_norm=config.mlp_t_norm, rms_norm_eps=config.rms_norm_eps,
                       attention_backend=config.attention_backend)
            for _ in range(config.num_layers)])
        self.heads = ReasoningHeads(config.hidden_size, metadata.vocab_size, self.embed.puzzle_emb_len)

    @property
    def puzzle_emb(self) -> nn.Module | None:
        """The sparse puzzle embedding (trained by the core's sign-SGD), or None."""
        return self.embed.puzzle_emb

    def initial_carry(self, batch: Batch) -> InnerCarry:
        shape = (batch["inputs"].shape[0], self.embed.total_len, self.config.hidden_size)
        return {"hidden": torch.zeros(shape, dtype=self.forward_dtype, device=batch["inputs"].device)}

    def reset_carry(self, reset: Tensor, carry: InnerCarry) -> InnerCarry:
        return {"hidden": torch.where(reset.view(-1, 1, 1), 0, carry["hidden"])}

    def forward(self, carry: InnerCarry, batch: Batch) -> tuple[InnerCarry, Outputs]:
        rotary = self.embed.rotary()
        hidden = self.embed(batch["inputs"], batch["puzzle_identifiers"])  # (B, S, D)
        for block in self.blocks:
            hidden = block(hidden, rotary)
        return {"hidden": hidden.detach()}, self.heads(hidden)


def build_transformer(config: TransformerConfig, context: ModelContext) -> Transformer:
    """Model factory registered as ``transformer``."""
    return Transformer(config, context)
