"""Reading ARC tasks: both layouts agree, malformed grids are reported with task and pair."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rr_arc.reader import ArcFormatError, read_subset, task_to_json


def _assert_same(a, b):
    assert a.task_id == b.task_id
    assert len(a.train) == len(b.train) and len(a.test_inputs) == len(b.test_inputs)
    for (i1, o1), (i2, o2) in zip(a.train, b.train):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(o1, o2)
    for g1, g2, o1, o2 in zip(a.test_inputs, b.test_inputs, a.test_outputs, b.test_outputs):
        np.testing.assert_array_equal(g1, g2)
        np.testing.assert_array_equal(o1, o2)


@pytest.mark.parametrize("folder_name", ["evaluation", "data/evaluation"])
def test_both_layouts_read_the_same_tasks(arc_dir, tmp_path, folder_name):
    combined = read_subset(arc_dir, "evaluation")
    # The per-task layout of the ARC-AGI repositories, written from the shared combined files.
    per_task_dir = tmp_path / "repo"
    (per_task_dir / folder_name).mkdir(parents=True)
    for task in combined:
        (per_task_dir / folder_name / f"{task.task_id}.json").write_text(json.dumps(task_to_json(task)))
    per_task = read_subset(per_task_dir, "evaluation")
    assert [t.task_id for t in per_task] == [t.task_id for t in combined] == sorted(t.task_id for t in combined)
    for a, b in zip(combined, per_task):
        _assert_same(a, b)
    assert all(o is not None for t in per_task for o in t.test_outputs)


def test_combined_reader_matches_raw_json(arc_dir, shared_tasks):
    challenges, solutions = shared_tasks["evaluation"]
    task = next(t for t in read_subset(arc_dir, "evaluation") if t.task_id == "12997ef3")
    assert [g.tolist() for g in task.test_inputs] == [p["input"] for p in challenges["12997ef3"]["test"]]
    assert [g.tolist() for g in task.test_outputs] == solutions["12997ef3"]
    assert task.train[1][1].tolist() == challenges["12997ef3"]["train"][1]["output"]


def test_missing_solutions_leave_test_outputs_unknown(arc_dir):
    (arc_dir / "arc-agi_training_solutions.json").unlink()
    tasks = read_subset(arc_dir, "training")
    assert all(o is None for t in tasks for o in t.test_outputs)


BAD_GRIDS = {
    "ragged": ([[1, 2], [3]], "ragged rows"),
    "colour 10": ([[1, 10]], "colours must be integers 0-9"),
    "negative": ([[-1]], "colours must be integers 0-9"),
    "bool": ([[True]], "colours must be integers 0-9"),
    "31 rows": ([[0]] * 31, "31 rows"),
    "31 columns": ([[0] * 31], "31 columns"),
    "empty": ([], "non-empty"),
    "empty row": ([[]], "non-empty"),
}


@pytest.mark.parametrize("kind", list(BAD_GRIDS))
def test_malformed_grid_names_task_and_pair(tmp_path, kind):
    grid, reason = BAD_GRIDS[kind]
    good = [[1, 2], [3, 4]]
    task = {"train": [{"input": good, "output": good}, {"input": good, "output": grid}], "test": [{"input": good}]}
    (tmp_path / "arc-agi_training_challenges.json").write_text(json.dumps({"abc123": task}))
    (tmp_path / "arc-agi_training_solutions.json").write_text(json.dumps({"abc123": [good]}))
    with pytest.raises(ArcFormatError, match=rf"task abc123, train pair 1 output: .*{reason}"):
        read_subset(tmp_path, "training")


def test_malformed_solution_names_test_pair(tmp_path):
    task = {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}, {"input": [[2]]}]}
    (tmp_path / "arc-agi_training_challenges.json").write_text(json.dumps({"t1": task}))
    (tmp_path / "arc-agi_training_solutions.json").write_text(json.dumps({"t1": [[[1]], [[1, 2], [3]]]}))
    with pytest.raises(ArcFormatError, match=r"task t1, test pair 1 output: ragged rows"):
        read_subset(tmp_path, "training")


def test_per_task_file_error_names_the_file(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "f00.json").write_text(
        json.dumps({"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[12]], "output": [[1]]}]})
    )
    with pytest.raises(ArcFormatError, match=r"f00\.json: task f00, test pair 0 input"):
        read_subset(tmp_path, "training")


def test_unknown_subset_says_what_was_expected(arc_dir):
    with pytest.raises(ArcFormatError, match="arc-agi_concept_challenges.json"):
        read_subset(arc_dir, "concept")
