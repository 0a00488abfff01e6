"""The sudoku data set and evaluator pass rr's conformance kit (what the core relies on)."""

from __future__ import annotations

from rrcore.testing import check_task


def test_sudoku_task_meets_the_core_contract(tmp_path):
    check_task(
        "sudoku",
        dict(source="generate", size=4, train_size=40, test_size=12, givens=6, num_aug=1, jobs=1),
        tmp_path,
        evaluators=["sudoku", "exact"],
    )
