"""``rr arc build`` and ``rr arc check-submission`` from the command line."""

from __future__ import annotations

import json

from click.testing import CliRunner
from rr_arc.cli import arc


def test_build_then_check_a_submission(arc_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(arc, ["build", "--path", str(arc_dir), "--train-subsets", "training,evaluation",
                                 "--num-aug", "2", "--out", str(tmp_path / "built")])
    assert result.exit_code == 0, result.output
    summary = result.stdout[result.stdout.index("{"):result.stdout.rindex("}") + 1]
    assert json.loads(summary)["test_groups"] == 4
    tasks_file = tmp_path / "built" / "test" / "arc_test_tasks.json"
    tasks = json.loads(tasks_file.read_text())
    good = {t: [{"attempt_1": p["input"], "attempt_2": [[0]]} for p in task["test"]] for t, task in tasks.items()}
    (tmp_path / "good.json").write_text(json.dumps(good))
    result = runner.invoke(arc, ["check-submission", str(tmp_path / "good.json"), "--tasks", str(tasks_file)])
    assert result.exit_code == 0 and "valid" in result.output
    bad = {**good, "00576224": [{"attempt_1": [[11]], "attempt_2": [[0]]}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    result = runner.invoke(arc, ["check-submission", str(tmp_path / "bad.json")])
    assert result.exit_code != 0 and "task 00576224, test 0, attempt_1" in result.output
