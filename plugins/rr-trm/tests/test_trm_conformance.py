"""TRM, ToTRM and the transformer baseline pass rr's conformance kit (what the core relies on)."""

from __future__ import annotations

import pytest

from rrcore.testing import check_model

TINY = dict(hidden_size=16, num_heads=2, expansion=2.0, puzzle_emb_ndim=16, puzzle_emb_len=2)


@pytest.mark.parametrize(
    ("plugin", "config", "no_grad_cycles"),
    [
        ("trm", {**TINY, "L_layers": 1, "H_cycles": 2, "L_cycles": 2}, None),
        ("totrm", {**TINY, "L_layers": 1, "H_cycles": 2, "L_cycles": 2, "tree_branching_steps": 1}, None),
        ("transformer", {**TINY, "num_layers": 1}, ()),  # no cycles: one pass per ACT step
    ],
)
def test_trm_models_meet_the_core_contract(plugin, config, no_grad_cycles):
    check_model(plugin, config, no_grad_cycles=no_grad_cycles)
