"""URM passes rr's conformance kit (what the core relies on)."""

from __future__ import annotations

from rrcore.testing import check_model


def test_urm_meets_the_core_contract():
    # Truncated backpropagation through loops: H_cycles - 1 cycles without gradient;
    # the last cycle's L_cycles applications all carry it, so only H_cycles is checked.
    check_model(
        "urm",
        dict(hidden_size=16, num_heads=2, expansion=2.0, num_layers=1, H_cycles=2, L_cycles=2, puzzle_emb_ndim=16),
        no_grad_cycles=("H_cycles",),
    )
