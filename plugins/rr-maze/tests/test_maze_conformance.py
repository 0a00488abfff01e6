"""The maze data set and evaluator pass rr's conformance kit (what the core relies on)."""

from __future__ import annotations

from rrcore.testing import check_task


def test_maze_task_meets_the_core_contract(tmp_path):
    check_task(
        "maze",
        dict(width=11, height=11, hard_threshold=10, train_size=8, test_size=12, seed=1),
        tmp_path,
        evaluators=["maze", "exact"],
    )
