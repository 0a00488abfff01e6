"""The arc data set and evaluator pass rr's conformance kit (what the core relies on), on a
few real tasks (skipped where the shared ARC data is absent)."""

from __future__ import annotations

from rrcore.testing import check_task


def test_arc_task_meets_the_core_contract(arc_dir, tmp_path):
    config = dict(path=str(arc_dir), train_subsets=["training", "evaluation"], test_subset="evaluation", num_aug=3)
    # rr solve reads a task JSON; decode writes the predicted grid, another form.
    task = '{"train": [{"input": [[1, 0]], "output": [[0, 1]]}], "test": [{"input": [[3, 0], [0, 3]]}]}'
    check_task("arc", config, tmp_path, evaluators=["arc", "exact"], puzzles=[task])
