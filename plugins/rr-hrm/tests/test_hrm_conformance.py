"""HRM passes rr's conformance kit (what the core relies on)."""

from __future__ import annotations

from rrcore.testing import check_model


def test_hrm_meets_the_core_contract():
    # HRM's one-step gradient: only the last L and H update carry gradient, so neither
    # count of cycles may grow what a training step keeps for backward.
    check_model(
        "hrm",
        dict(
            hidden_size=16,
            num_heads=2,
            expansion=2.0,
            H_layers=1,
            L_layers=1,
            H_cycles=2,
            L_cycles=2,
            puzzle_emb_ndim=16,
        ),
        no_grad_cycles=("H_cycles", "L_cycles"),
    )
