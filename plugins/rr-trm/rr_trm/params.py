"""Parameter counts of the papers' TRM configurations, without data or a CLI.

``python -c "from rr_trm.params import paper_parameter_counts; print(paper_parameter_counts())"``

Counts are of trainable parameters only: puzzle embeddings are buffers trained
by sign-SGD (as in the references, which leave them out of their totals too),
and so are the fixed initial states ``H_init`` / ``L_init``.
"""

from __future__ import annotations

import attrs
from torch import nn

from rr_trm.trm import TRM, TRMConfig
from rrcore.api import model_context


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (buffers such as puzzle embeddings excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


PAPER_CONFIGS: dict[str, tuple[TRMConfig, int, int]] = {
    # name: (config, vocab_size, seq_len) — the data shapes of the reference builders.
    "trm_att_arc": (
        TRMConfig(
            hidden_size=512,
            num_heads=8,
            expansion=4.0,
            L_layers=2,
            H_cycles=3,
            L_cycles=4,
            puzzle_emb_ndim=512,
            puzzle_emb_len=16,
            pos_encodings="rope",
        ),
        12,
        900,
    ),
    "trm_mlp_sudoku": (
        TRMConfig(
            hidden_size=512,
            num_heads=8,
            expansion=4.0,
            L_layers=2,
            H_cycles=3,
            L_cycles=6,
            puzzle_emb_ndim=512,
            puzzle_emb_len=16,
            pos_encodings="none",
            mlp_t=True,
        ),
        11,
        81,
    ),
}
"""The papers' set-ups: TRM-att on ARC-AGI (≈ 7M in the paper) and TRM-MLP on
Sudoku-Extreme (≈ 5M)."""


def paper_parameter_counts(**overrides: object) -> dict[str, int]:
    """Trainable parameters of each :data:`PAPER_CONFIGS` model (``overrides`` replace config keys)."""
    counts = {}
    for name, (config, vocab_size, seq_len) in PAPER_CONFIGS.items():
        model = TRM(attrs.evolve(config, **overrides), model_context(vocab_size, seq_len))
        counts[name] = count_parameters(model)
    return counts
