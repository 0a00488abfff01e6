"""What rr's architectures share around their recurrence, so a model file holds only the recurrence.

A model's config subclasses :class:`ReasoningModelConfig` (the shared keys stay flat in ``[model]``
and in the constructor: ``TRMConfig(hidden_size=64)``); its module subclasses
:class:`ReasoningModel`, which builds the input layer and the carry::

    class MyModel(ReasoningModel):
        predicts_q_continue = False              # [act] q_continue follows this
        def __init__(self, config: MyConfig, context: ModelContext) -> None:
            super().__init__(config, context)    # self.config, self.forward_dtype, self.embed_input
            self.block = PostNormBlock.from_config(config)
            self.heads = ReasoningHeads(config.hidden_size, context.metadata.vocab_size,
                                        self.embed_input.puzzle_emb_len)
            self.register_carry(z="z_init")      # carry "z" starts and restarts at buffer z_init

        def forward(self, carry, batch): ...     # one ACT step
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch import Tensor, nn

from rrcore.base.validators import at_least, non_negative, positive
from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import Batch, InnerCarry, ModelContext
from rrcore.model.carry import reset_rows
from rrcore.model.layers import AttentionBackend, trunc_normal_
from rrcore.model.puzzle_io import PositionEncoding, PuzzleInput, SparsePuzzleEmbedding


@attrs.define
class ReasoningModelConfig:
    """The ``[model]`` keys every bundled model shares; subclass it for a model's config.

    ``hidden_size`` features per position, ``num_heads`` attention heads (the rotary tables
    are sized by ``hidden_size // num_heads``). ``puzzle_emb_ndim`` floats of learned
    per-puzzle embedding (0 = none) fill a prefix of ``puzzle_emb_len`` positions
    (0 = ``ceil(puzzle_emb_ndim / hidden_size)``). ``pos_encodings``: ``rope``, ``learned``
    or ``none``, with ``rope_theta`` the rotary base. Post-norm blocks: SwiGLU width from
    ``expansion``, RMSNorm ``rms_norm_eps``, ``attention_backend`` ``auto`` (flash-attn on
    CUDA when installed), ``sdpa`` or ``flash``.
    """

    hidden_size: int = attrs.field(default=512, validator=at_least(1))
    num_heads: int = attrs.field(default=8, validator=at_least(1))
    expansion: float = attrs.field(default=4.0, validator=positive)
    puzzle_emb_ndim: int = attrs.field(default=512, validator=non_negative)
    puzzle_emb_len: int = attrs.field(default=0, validator=non_negative)
    pos_encodings: PositionEncoding = "rope"
    rms_norm_eps: float = attrs.field(default=1e-5, validator=positive)
    rope_theta: float = attrs.field(default=10000.0, validator=positive)
    attention_backend: AttentionBackend = "auto"


class ReasoningModel(nn.Module):
    """Base of an inner recurrence (:class:`rrcore.contracts.protocols.Model`): the input layer, the
    Q-continue declaration and the carry; a subclass adds its layers and ``forward``.

    ``input_name`` is the input layer's attribute, hence its state-dict prefix
    (``embed_input`` unless a model's checkpoints say otherwise).
    """

    predicts_q_continue: ClassVar[bool] = False
    """True when the model halts on q_halt > q_continue and trains Q-continue towards the
    bootstrapped target (HRM). Experiment validation sets ``[act] q_continue`` from it and
    rejects a value that contradicts it."""

    def __init__(self, config: ReasoningModelConfig, context: ModelContext, *, input_name: str = "embed_input") -> None:
        super().__init__()
        self.config = config
        self.forward_dtype = context.forward_dtype
        self.input_name = input_name
        self.add_module(input_name, PuzzleInput.from_config(config, context))
        self.carry_states: dict[str, str | None] = {}

    @property
    def input_layer(self) -> PuzzleInput:
        """The :class:`PuzzleInput` (token embedding, puzzle prefix, positions)."""
        return getattr(self, self.input_name)

    @property
    def puzzle_emb(self) -> SparsePuzzleEmbedding | None:
        """The sparse puzzle embedding (trained by sign-SGD), or None without one.

        A property rather than a second registration so the table, which can be
        gigabytes, appears once in the state dict.
        """
        return self.input_layer.puzzle_emb

    # -- carry -------------------------------------------------------------------------

    def register_carry(self, **initial_states: str | None) -> None:
        """Declare the carry: one (B, positions, hidden_size) state per keyword.

        Each state starts, and restarts where a row is reset, at the buffer its keyword
        names: a (hidden_size,) vector drawn here, in keyword order, from a truncated
        normal of std 1 and never trained, as in the papers' code (kept in float32 for
        exact, dtype-independent checkpoints; cast at reset). ``None``: restart at zero.
        ``register_carry(z_H="H_init", z_L="L_init")`` is HRM's and TRM's carry.
        """
        for buffer in initial_states.values():
            if buffer is not None:
                self.register_buffer(buffer, trunc_normal_(torch.empty(self.config.hidden_size), std=1.0))
        self.carry_states = dict(initial_states)

    def initial_carry(self, batch: Batch) -> InnerCarry:
        """Zero states for ``batch``; every row is reset before its first step."""
        shape = (batch["inputs"].shape[0], self.input_layer.total_len, self.config.hidden_size)
        device = batch["inputs"].device
        return {name: torch.zeros(shape, dtype=self.forward_dtype, device=device) for name in self.carry_states}

    def reset_carry(self, reset: Tensor, carry: InnerCarry) -> InnerCarry:
        """Rows where ``reset`` (B,) is True go back to the initial states."""
        initial = {
            name: getattr(self, buffer) if buffer is not None else 0 for name, buffer in self.carry_states.items()
        }
        return reset_rows(reset, carry, initial)


def model_context(
    vocab_size: int,
    seq_len: int,
    *,
    num_puzzle_identifiers: int = 1,
    batch_size: int = 1,
    forward_dtype: torch.dtype = torch.float32,
) -> ModelContext:
    """A :class:`~rrcore.contracts.protocols.ModelContext` for a data set of this shape, without building
    one: to build a model for tests, parameter counts or tools."""
    metadata = DatasetMetadata(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=vocab_size,
        seq_len=seq_len,
        num_puzzle_identifiers=num_puzzle_identifiers,
        total_groups=1,
        mean_puzzle_examples=1.0,
        sets=["all"],
    )
    return ModelContext(metadata=metadata, batch_size=batch_size, forward_dtype=forward_dtype)
