"""Input and output of a reasoning model, shared by HRM, TRM and URM: the token and
puzzle embeddings with positions (:class:`PuzzleInput`) and the LM and Q heads
(:class:`ReasoningHeads`). The puzzle embeddings are trained by
:class:`rrcore.training.sign_sgd.SignSGD`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rrcore.model.layers import CastedEmbedding, CastedLinear, RotaryEmbedding


class SparsePuzzleEmbedding(nn.Module):
    """One learned vector per puzzle identifier, trained only on the rows in the batch.

    The table is a buffer (saved in the state dict, not a parameter: a data set of a
    million augmented puzzles would make the optimizer state gigabytes). In training
    the rows of the batch are copied into ``local_weights``, a fixed-size leaf that
    receives the gradient; sign-SGD then updates the table at ``local_ids``.
    The batch size per rank must therefore be fixed (the trainer guarantees it).
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, batch_size: int, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        self.dtype = dtype
        self.register_buffer("weights", torch.zeros(num_embeddings, embedding_dim))
        self.register_buffer(
            "local_weights", torch.zeros(batch_size, embedding_dim, requires_grad=True), persistent=False
        )
        self.register_buffer("local_ids", torch.zeros(batch_size, dtype=torch.int64), persistent=False)

    def _apply(self, fn, recurse=True):
        # Moving a module (.to, .cuda) replaces buffers with converted copies; a copy of a
        # tensor that requires grad is not a leaf, and only leaves receive .grad.
        super()._apply(fn, recurse)
        self.local_weights = self.local_weights.detach().requires_grad_()
        return self

    def forward(self, ids: Tensor) -> Tensor:
        if not self.training:
            return self.weights[ids].to(self.dtype)
        with torch.no_grad():
            self.local_weights.copy_(self.weights[ids])
            self.local_ids.copy_(ids)
        return self.local_weights.to(self.dtype)


PositionEncoding = Literal["rope", "learned", "none"]


class PuzzleInput(nn.Module):
    """Token embedding + puzzle-embedding prefix + position encoding.

    Returns (B, puzzle_emb_len + seq_len, D) in ``dtype``: the puzzle embedding of
    ``puzzle_emb_ndim`` floats (zero-initialised, sign-SGD trained) occupies the
    first ``puzzle_emb_len`` positions (default ``ceil(puzzle_emb_ndim / D)``),
    tokens the rest. Token embeddings have std 1/sqrt(D) and are scaled by
    sqrt(D); learned positions are added and the sum scaled by 1/sqrt(2); rotary
    tables are exposed through :meth:`rotary` for the attention layers.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        hidden_size: int,
        seq_len: int,
        num_heads: int,
        num_puzzle_identifiers: int,
        puzzle_emb_ndim: int,
        batch_size: int,
        puzzle_emb_len: int | None = None,
        pos_encodings: PositionEncoding = "rope",
        rope_theta: float = 10000.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.dtype = dtype
        self.embed_scale = math.sqrt(hidden_size)
        self.embed_tokens = CastedEmbedding(vocab_size, hidden_size, init_std=1.0 / self.embed_scale, dtype=dtype)
        self.puzzle_emb_ndim = puzzle_emb_ndim
        if puzzle_emb_len is None:
            puzzle_emb_len = -(-puzzle_emb_ndim // hidden_size) if puzzle_emb_ndim > 0 else 0
        if puzzle_emb_ndim > puzzle_emb_len * hidden_size:
            raise ValueError(
                f"puzzle_emb_ndim {puzzle_emb_ndim} does not fit in puzzle_emb_len "
                f"{puzzle_emb_len} positions of {hidden_size}"
            )
        self.puzzle_emb_len = puzzle_emb_len
        self.puzzle_emb = (
            SparsePuzzleEmbedding(num_puzzle_identifiers, puzzle_emb_ndim, batch_size, dtype)
            if puzzle_emb_ndim > 0
            else None
        )
        self.total_len = seq_len + puzzle_emb_len
        self.pos_encodings = pos_encodings
        self.rotary_emb = (
            RotaryEmbedding(hidden_size // num_heads, self.total_len, rope_theta) if pos_encodings == "rope" else None
        )
        self.embed_pos = (
            CastedEmbedding(self.total_len, hidden_size, init_std=1.0 / self.embed_scale, dtype=dtype)
            if pos_encodings == "learned"
            else None
        )
        if pos_encodings not in ("rope", "learned", "none"):
            raise ValueError(f"pos_encodings must be 'rope', 'learned' or 'none', got {pos_encodings!r}")

    @classmethod
    def from_config(cls, config: Any, context: Any) -> PuzzleInput:
        """Build from a config with the keys of :class:`rrcore.model.model_kit.ReasoningModelConfig`
        and a :class:`rrcore.contracts.protocols.ModelContext`."""
        metadata = context.metadata
        return cls(
            vocab_size=metadata.vocab_size,
            hidden_size=config.hidden_size,
            seq_len=metadata.seq_len,
            num_heads=config.num_heads,
            num_puzzle_identifiers=metadata.num_puzzle_identifiers,
            puzzle_emb_ndim=config.puzzle_emb_ndim,
            batch_size=context.batch_size,
            puzzle_emb_len=config.puzzle_emb_len or None,
            pos_encodings=config.pos_encodings,
            rope_theta=config.rope_theta,
            dtype=context.forward_dtype,
        )

    def rotary(self) -> tuple[Tensor, Tensor] | None:
        return self.rotary_emb() if self.rotary_emb is not None else None

    def forward(self, inputs: Tensor, puzzle_identifiers: Tensor) -> Tensor:
        embedding = self.embed_tokens(inputs.to(torch.int32))  # (B, L, D)
        if self.puzzle_emb is not None:
            prefix = self.puzzle_emb(puzzle_identifiers)  # (B, puzzle_emb_ndim)
            pad = self.puzzle_emb_len * self.hidden_size - prefix.shape[-1]
            if pad:
                prefix = F.pad(prefix, (0, pad))
            embedding = torch.cat(
                (prefix.view(-1, self.puzzle_emb_len, self.hidden_size).to(embedding.dtype), embedding), dim=-2
            )
        elif self.puzzle_emb_len:
            embedding = F.pad(embedding, (0, 0, self.puzzle_emb_len, 0))
        if self.embed_pos is not None:
            embedding = (embedding + self.embed_pos.weight.to(embedding.dtype)) / math.sqrt(2)
        return self.embed_scale * embedding


class ReasoningHeads(nn.Module):
    """The LM head over token positions and the Q-head (halt, continue) on position 0.

    The Q-head starts with zero weights and bias -5, so a fresh model never halts
    early by chance.
    """

    def __init__(self, hidden_size: int, vocab_size: int, puzzle_emb_len: int) -> None:
        super().__init__()
        self.puzzle_emb_len = puzzle_emb_len
        self.lm_head = CastedLinear(hidden_size, vocab_size)
        self.q_head = CastedLinear(hidden_size, 2, bias=True)
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

    def forward(self, hidden: Tensor) -> dict[str, Tensor]:
        """``hidden`` (B, puzzle_emb_len + L, D) → logits (B, L, V) and Q logits (B,) in float32."""
        logits = self.lm_head(hidden[:, self.puzzle_emb_len :])
        q = self.q_head(hidden[:, 0]).to(torch.float32)
        return {"logits": logits, "q_halt_logits": q[..., 0], "q_continue_logits": q[..., 1]}
