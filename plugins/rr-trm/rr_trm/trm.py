"""TRM: the Tiny Recursive Model (Jolicoeur-Martineau, "Less is More: Recursive
Reasoning with Tiny Networks", arXiv 2510.04871).

One ACT step (one call of :meth:`TRM.forward`) is the paper's ``deep_recursion``::

    x = embed(inputs)                       # input embedding, puzzle prefix included
    with no_grad:                           # H_cycles - 1 cycles without gradients
        repeat H_cycles - 1: y, z = latent_recursion(x, y, z)
    y, z = latent_recursion(x, y, z)        # the last cycle with gradients
    return (y, z) detached, lm_head(y), q_head(y[:, 0])

    latent_recursion(x, y, z):
        repeat L_cycles: z = net(z + y + x)     # latent reasoning
        y = net(y + z)                          # refine the answer
        return y, z

``y`` is the answer state ``z_H`` and ``z`` the latent ``z_L`` (the reference
code's names, kept in the carry). ``net`` is ONE stack of ``L_layers`` post-norm
blocks shared by both updates. With ``mlp_t`` the blocks mix positions with an
MLP across the sequence instead of self-attention (the paper's TRM-MLP for Sudoku).

ACT halting lives in :mod:`rrcore.model.act`, the losses in :mod:`rrcore.model.act_loss`;
the embeddings and heads in :mod:`rrcore.model.puzzle_io`; the shared config keys, the input layer and the carry in
:mod:`rrcore.model.model_kit`. This file holds only the recurrence.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
from torch import Tensor, nn

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
    StateRecord,
    StateRecorder,
    SwiGLU,
    at_least,
    non_negative,
    record_state,
    repeated_region,
    rms_norm,
)


@attrs.define
class TRMConfig(ReasoningModelConfig):
    """The ``[model]`` keys of ``plugin = "trm"``: the shared keys
    (:class:`rrcore.model.model_kit.ReasoningModelConfig`, ``puzzle_emb_len`` 16 here) and these.

    ``H_cycles`` answer updates per ACT step, each after ``L_cycles`` latent
    updates; ``L_layers`` blocks in the shared network. ``mlp_t`` replaces
    attention by a SwiGLU across positions; ``mlp_t_norm`` says which axis the
    RMSNorm after it normalises: ``positions`` as the reference code (its norm
    runs on the transposed tensor) or ``channels`` as every other post-norm block.
    ``recompute`` trades compute for memory in the differentiated cycle: the SwiGLU
    activations of the sequence MLP (``sequence_mlp``: 1024 values per channel for
    Sudoku's 97 positions, the largest tensors kept for backward, cheap to recompute)
    or of every MLP (``all_mlps``) are recomputed in the backward pass instead of kept;
    ``swiglu_products`` recomputes only every SwiGLU's ``silu(gate) * up``, elementwise from
    the gate and up activations kept anyway (no matrix product repeated in backward).
    ``eval_extra_H_cycles`` more latent recursions per ACT step in eval mode:
    inference-time scaling, thinking longer than in training (0 = as trained).
    ``gated_norm``: every SwiGLU (the sequence MLP's too) computes
    ``sigmoid(gate) * rms_norm(gate * up)`` instead of ``silu(gate) * up``
    (:class:`rrcore.model.layers.SwiGLU`; the fast Sudoku recipe's choice, off in the paper).
    """

    L_layers: int = attrs.field(default=2, validator=at_least(1))
    H_cycles: int = attrs.field(default=3, validator=at_least(1))
    L_cycles: int = attrs.field(default=6, validator=at_least(1))
    mlp_t: bool = False
    mlp_t_norm: Literal["positions", "channels"] = "positions"
    recompute: Literal["none", "sequence_mlp", "all_mlps", "swiglu_products"] = "none"
    eval_extra_H_cycles: int = attrs.field(default=0, validator=non_negative)
    puzzle_emb_len: int = attrs.field(default=16, validator=non_negative)  # the reference's prefix
    gated_norm: bool = False


# ---------------------------------------------------------------------------------------
# Building blocks, in order of use: embedding (rrcore), sequence MLP, block, net and heads (rrcore)
# ---------------------------------------------------------------------------------------


class SequenceMLP(nn.Module):
    """TRM-MLP's token mixer: a SwiGLU over the positions of each channel.

    (B, L, D) is transposed to (B, D, L) so the SwiGLU's "hidden size" is the
    sequence length L (puzzle prefix included); its inner width follows the usual
    rule, ``2/3 * expansion * L`` rounded up to a multiple of 256, as the reference.
    """

    def __init__(
        self,
        seq_len: int,
        expansion: float,
        recompute: bool = False,
        recompute_product: bool = False,
        gated_norm: bool = False,
    ) -> None:
        super().__init__()
        self.mlp = SwiGLU(
            seq_len, expansion, recompute=recompute, recompute_product=recompute_product, gated_norm=gated_norm
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)


class PositionNormBlock(PostNormBlock):
    """The reference's ``mlp_t`` block: the norm after the sequence MLP runs over
    positions (the reference normalises the transposed (B, D, L) tensor), the norm
    after the channel MLP over channels as usual."""

    @repeated_region
    def forward(self, x: Tensor, rotary: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x_t = x.transpose(1, 2)  # (B, D, L)
        x = rms_norm(x_t + self.mixer.mlp(x_t), self.norm_eps).transpose(1, 2)
        return rms_norm(x + self.mlp(x), self.norm_eps)


def make_block(config: Any, seq_len: int, recompute: str = "none") -> nn.Module:
    """One post-norm block of ``config`` (TRM's keys, or any config with the shared keys and
    ``mlp_t``, ``mlp_t_norm``): attention, or with ``mlp_t`` a SwiGLU across ``seq_len`` positions."""
    if not config.mlp_t:
        block = PostNormBlock.from_config(config)
    else:
        block_class = PositionNormBlock if config.mlp_t_norm == "positions" else PostNormBlock
        mixer = SequenceMLP(
            seq_len,
            config.expansion,
            recompute=recompute in ("sequence_mlp", "all_mlps"),
            recompute_product=recompute == "swiglu_products",
            gated_norm=getattr(config, "gated_norm", False),
        )
        block = block_class.from_config(config, mixer=mixer)
    block.mlp.recompute = recompute == "all_mlps"
    block.mlp.recompute_product = recompute == "swiglu_products"
    block.mlp.gated_norm = getattr(config, "gated_norm", False)
    return block


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


class TRM(StateRecorder, ReasoningModel):
    """TRM's inner recurrence: one ACT step of ``H_cycles`` x (``L_cycles`` + 1) net calls.

    The carry holds ``z_H`` (the answer y) and ``z_L`` (the latent z), each
    (B, puzzle_emb_len + seq_len, hidden_size) in the forward dtype. Rows are reset
    to the initial states ``H_init`` / ``L_init``: buffers drawn once from a
    truncated normal of std 1 and, as in the references, never trained.
    ``recording_states()`` records ``z_L`` (z: H_cycles * L_cycles per step) and ``z_H``
    (y: H_cycles per step), as :class:`rrcore.contracts.protocols.RecordsStates` describes.
    """

    def __init__(self, config: TRMConfig, context: ModelContext) -> None:
        super().__init__(config, context, input_name="embed")
        self.net = InjectedStack(
            make_block(config, self.embed.total_len, config.recompute) for _ in range(config.L_layers)
        )
        self.heads = ReasoningHeads(config.hidden_size, context.metadata.vocab_size, self.embed.puzzle_emb_len)
        self.register_carry(z_H="H_init", z_L="L_init")

    # -- recurrence --------------------------------------------------------------------

    def latent_recursion(
        self,
        x: Tensor,
        z_H: Tensor,
        z_L: Tensor,
        rotary: tuple[Tensor, Tensor] | None,
        record: StateRecord | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``L_cycles`` updates of the latent from (z_L, z_H + x), then one of the answer."""
        for _ in range(self.config.L_cycles):
            z_L = self.net(z_L, z_H + x, rotary)
            record_state(record, "z_L", z_L)
        z_H = self.net(z_H, z_L, rotary)
        record_state(record, "z_H", z_H)
        return z_H, z_L

    def forward(self, carry: InnerCarry, batch: Batch) -> tuple[InnerCarry, Outputs]:
        """One ACT step: ``H_cycles`` latent recursions, gradients through the last only."""
        rotary = self.embed.rotary()
        x = self.embed(batch["inputs"], batch["puzzle_identifiers"])  # (B, S, D)
        z_H, z_L = carry["z_H"], carry["z_L"]
        record = self.new_state_record()
        # The paper's deep recursion: earlier cycles only improve the starting point
        # of the last one, so they need no activations kept for backward.
        H_cycles = self.config.H_cycles
        if not self.training:
            H_cycles += self.config.eval_extra_H_cycles
        with torch.no_grad():
            for _ in range(H_cycles - 1):
                z_H, z_L = self.latent_recursion(x, z_H, z_L, rotary, record)
        z_H, z_L = self.latent_recursion(x, z_H, z_L, rotary, record)
        outputs = self.heads(z_H)
        return {"z_H": z_H.detach(), "z_L": z_L.detach()}, outputs
