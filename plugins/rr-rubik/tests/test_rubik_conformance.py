"""The rubik data set and evaluator pass rr's conformance kit (what the core relies on)."""

from __future__ import annotations

from rrcore.testing import check_task


def test_rubik_task_meets_the_core_contract(tmp_path):
    # rr solve reads scrambles; decode writes the predicted moves, another form.
    check_task(
        "rubik",
        dict(train_size=60, test_size=33, seed=3),
        tmp_path,
        evaluators=["rubik", "exact"],
        puzzles=["R U2 F'", "U", "F\u2019 R2"],
    )
