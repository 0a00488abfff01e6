"""``rr data build arc`` and ``rr arc check-submission`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from arc_testdata import write_combined
from click.testing import CliRunner
from rr_arc.cli import arc

from rrcore.cli.main import main


def build(*settings: str, cache_dir):
    args = ["data", "build", "arc", "--cache-dir", str(cache_dir)]
    for setting in settings:
        args += ["--set", setting]
    return CliRunner().invoke(main, args)


def test_build_then_check_a_submission(arc_dir, tmp_path):
    runner = CliRunner()
    result = build(
        f"path={str(arc_dir)!r}", "train_subsets=['training', 'evaluation']", "num_aug=2", cache_dir=tmp_path / "cache"
    )
    assert result.exit_code == 0, result.output
    assert "test: 4 groups" in result.stderr
    built = Path(result.stdout.strip())
    assert json.loads((built / "arc_build_summary.json").read_text())["test_groups"] == 4
    tasks_file = built / "test" / "arc_test_tasks.json"
    tasks = json.loads(tasks_file.read_text())
    good = {t: [{"attempt_1": p["input"], "attempt_2": [[0]]} for p in task["test"]] for t, task in tasks.items()}
    (tmp_path / "good.json").write_text(json.dumps(good))
    result = runner.invoke(arc, ["check-submission", str(tmp_path / "good.json"), "--tasks", str(tasks_file)])
    assert result.exit_code == 0 and "valid" in result.output
    bad = {**good, "00576224": [{"attempt_1": [[11]], "attempt_2": [[0]]}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    result = runner.invoke(arc, ["check-submission", str(tmp_path / "bad.json")])
    assert result.exit_code != 0 and "task 00576224, test 0, attempt_1" in result.output


def _one_error_line(result) -> str:
    """The single ``rr: error:`` line a bad input must produce (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rr: error: "), result.stderr
    return lines[0]


def test_build_names_a_missing_subset_and_the_subsets_that_are_there(arc_dir, tmp_path):
    result = build(f"path={str(arc_dir)!r}", cache_dir=tmp_path / "cache")
    message = _one_error_line(result)  # the default subsets include concept, absent here
    found = "(subsets found there: evaluation, training)"
    assert f"{arc_dir}: subset 'concept' not found {found}" in message
    assert "arc-agi_concept_challenges.json" in message


def test_build_with_a_wrong_path_says_what_the_folder_should_hold(tmp_path):
    a_file = tmp_path / "arc-agi_training_challenges.json"
    a_file.write_text("{}")
    cases = ((tmp_path / "nowhere", "no such folder"), (a_file, "is a file, not a folder"))
    for wrong, problem in cases:
        message = _one_error_line(build(f"path={str(wrong)!r}", cache_dir=tmp_path / "cache"))
        assert message.startswith(
            f"rr: error: data plugin 'arc': [data] path {wrong}: {problem}; it should hold the ARC subsets"
        )


def _per_task_folder(folder, challenges: dict, solutions: dict):
    """The ARC-AGI repositories' layout: one <task_id>.json per task, test outputs inline."""
    folder.mkdir(parents=True)
    for task_id, task in challenges.items():
        outputs = solutions[task_id]
        test = [{**pair, "output": output} for pair, output in zip(task["test"], outputs)]
        (folder / f"{task_id}.json").write_text(json.dumps({"train": task["train"], "test": test}))
    return folder


def _submission(path, challenges: dict, skip: str | None = None):
    answers = {
        task_id: [{"attempt_1": pair["input"], "attempt_2": [[0]]} for pair in task["test"]]
        for task_id, task in challenges.items()
        if task_id != skip
    }
    path.write_text(json.dumps(answers))
    return path


def test_check_submission_against_either_layout(shared_tasks, arc_dir, tmp_path):
    challenges, solutions = shared_tasks["evaluation"]
    per_task = _per_task_folder(tmp_path / "data" / "evaluation", challenges, solutions)
    combined_file = arc_dir / "arc-agi_evaluation_challenges.json"
    only_evaluation = tmp_path / "combined"
    write_combined(only_evaluation, "evaluation", challenges, solutions)
    good = _submission(tmp_path / "good.json", challenges)
    runner = CliRunner()
    for tasks in (per_task, per_task / "12997ef3.json", combined_file, only_evaluation):
        expected = {"12997ef3"} if tasks.name == "12997ef3.json" else set(challenges)
        if len(expected) == 1:
            one = _submission(tmp_path / "one.json", {"12997ef3": challenges["12997ef3"]})
            result = runner.invoke(arc, ["check-submission", str(one), "--tasks", str(tasks)])
        else:
            result = runner.invoke(arc, ["check-submission", str(good), "--tasks", str(tasks)])
        assert result.exit_code == 0, (tasks, result.output)
        assert "valid ARC Prize submission" in result.stdout

    missing = _submission(tmp_path / "missing.json", challenges, skip="00576224")
    result = runner.invoke(arc, ["check-submission", str(missing), "--tasks", str(per_task)])
    assert f"{missing}: task ids differ (missing ['00576224']" in _one_error_line(result)
    # 12997ef3 has two test inputs: one entry is too few, whichever layout says so.
    short = json.loads(good.read_text())
    short["12997ef3"] = short["12997ef3"][:1]
    (tmp_path / "short.json").write_text(json.dumps(short))
    for tasks in (per_task, combined_file):
        args = ["check-submission", str(tmp_path / "short.json"), "--tasks", str(tasks)]
        result = runner.invoke(arc, args)
        assert "task 12997ef3: 1 entries for 2 test inputs" in _one_error_line(result)


def test_check_submission_refuses_a_folder_of_several_combined_files(arc_dir, tmp_path):
    submission = tmp_path / "s.json"
    submission.write_text("{}")
    result = CliRunner().invoke(arc, ["check-submission", str(submission), "--tasks", str(arc_dir)])
    assert "holds several combined-layout files" in _one_error_line(result)
