"""Every command a task plugin adds to ``rr`` answers bad input with one line, exit 2.

Each case hands a command a path that does not exist, a folder where a file belongs,
an empty file or a folder missing a part, and expects ``rr: error: ...`` naming what
is wrong on one stderr line, no traceback. A plugin command without a case here fails
``test_every_task_command_has_a_bad_input_case``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rrcore.cli import main

CORE_COMMANDS = {"run", "validate", "eval", "bench", "list-plugins", "solve", "report", "analyze",
                 "new-plugin"}
TASK_GROUPS = {"sudoku", "arc", "maze", "rubik"}

# (command, arguments, what the one error line must contain); {names} are paths made below.
CASES = [
    ("sudoku build", ["--train-path", "{missing}", "--test-size", "1"],
     "{missing}: no such puzzle file"),
    ("sudoku build", ["--train-path", "{folder}", "--test-size", "1"],
     "{folder}: is a folder, not a puzzle file"),
    ("sudoku build", ["--train-path", "{empty}", "--test-size", "1"],
     "{empty}: the puzzle file is empty"),
    ("sudoku build", ["{missing}"], "{missing}: no such experiment file"),
    ("sudoku build", ["{folder}"], "{folder}: is a folder, not an experiment file"),
    ("sudoku build", ["--source", "generate", "--size", "4", "--train-size", "2",
                      "--test-size", "1", "--cache-dir", "{file}"],
     "{file}: is a file, not a cache folder"),
    ("sudoku build", ["--train-path", "{comments}", "--test-size", "1"],
     "{comments}: only 0 usable puzzles for the test split"),
    ("sudoku label", ["{missing}"], "{missing}: no such puzzle file"),
    ("sudoku label", ["{folder}"], "{folder}: is a folder, not a puzzle file"),
    ("sudoku label", ["{empty}"], "{empty}: the puzzle file is empty"),
    ("sudoku label", ["{comments}"], "{comments}: no puzzles to label"),
    ("sudoku label", ["{puzzles}", "--output", "{folder}"], "{folder}: is a folder"),
    ("sudoku generate", ["--count", "0"], "--count must be at least 1"),
    ("sudoku generate", ["--size", "4", "--givens", "17", "--jobs", "1"],
     "givens must lie in [1, 16]"),
    ("arc build", ["--path", "{missing}"], "--path {missing}: no such folder"),
    ("arc build", ["--path", "{file}"], "--path {file}: is a file, not a folder"),
    ("arc build", ["--path", "{arc}", "--out", "{new}"], "{arc}: subset 'concept' not found"),
    ("arc build", ["--path", "{arc_empty}", "--train-subsets", "training",
                   "--test-subset", "training", "--out", "{new}"],
     "arc-agi_training_challenges.json: the file is empty"),
    ("arc build", ["--path", "{arc}", "--train-subsets", "training", "--test-subset", "training",
                   "--out", "{folder}"], "--out {folder}: exists"),
    ("arc check-submission", ["{missing}"], "{missing}: no such submission file"),
    ("arc check-submission", ["{folder}"], "{folder}: is a folder, not a submission file"),
    ("arc check-submission", ["{empty}"], "{empty}: the submission file is empty"),
    ("arc check-submission", ["{file}"], "{file}: not valid JSON"),
    ("arc check-submission", ["{submission}", "--tasks", "{missing}"],
     "--tasks {missing}: no such"),
    ("arc check-submission", ["{submission}", "--tasks", "{empty}"], "{empty}: the file is empty"),
    ("arc check-submission", ["{submission}", "--tasks", "{folder}"],
     "{folder}: no <task_id>.json"),
    ("maze build", ["--csv-dir", "{missing}"], "{missing}: no such maze CSV folder"),
    ("maze build", ["--csv-dir", "{file}"], "{file}: is a file, not a maze CSV folder"),
    ("maze build", ["--csv-dir", "{folder}", "--cache-dir", "{new}"],
     "{folder}/train.csv: missing (csv_dir must hold train.csv and test.csv)"),
    ("maze build", ["--csv-dir", "{maze_empty}", "--cache-dir", "{new}"],
     "{maze_empty}/train.csv: the file is empty"),
    ("maze build", ["--cache-dir", "{file}"], "{file}: is a file, not a cache folder"),
    ("maze bench", ["--count", "0"], "--count must be at least 1"),
    ("rubik table", ["--cache-dir", "{file}"], "{file}: is a file, not a cache folder"),
    ("rubik build", ["--cache-dir", "{file}/below"],
     "{file} is a file, so it cannot hold a cache folder"),
    ("rubik build", ["--train-size", "0"], "--train-size must be at least 1"),
]

TASK = {"train": [{"input": [[1, 0]], "output": [[0, 1]]}], "test": [{"input": [[2, 0]]}]}


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    """Bad and good inputs: a missing path, an empty folder, an empty file, a small file, ..."""
    made = {"missing": tmp_path / "missing.txt", "new": tmp_path / "new",
            "folder": tmp_path / "folder",
            "empty": tmp_path / "empty.txt", "file": tmp_path / "a-file.txt",
            "comments": tmp_path / "comments.txt", "puzzles": tmp_path / "puzzles.txt",
            "submission": tmp_path / "submission.json", "arc": tmp_path / "arc",
            "arc_empty": tmp_path / "arc-empty", "maze_empty": tmp_path / "maze-empty"}
    made["folder"].mkdir()
    made["empty"].touch()
    made["file"].write_text("not json, not a folder\n")
    made["comments"].write_text("# only a comment\n\n")
    made["puzzles"].write_text("1234341221434321\n")
    made["submission"].write_text(json.dumps({"t1": [{"attempt_1": [[0]], "attempt_2": [[0]]}]}))
    for subset in ("training", "evaluation"):  # combined layout without the default 'concept'
        made["arc"].mkdir(exist_ok=True)
        (made["arc"] / f"arc-agi_{subset}_challenges.json").write_text(json.dumps({"t1": TASK}))
    made["arc_empty"].mkdir()
    (made["arc_empty"] / "arc-agi_training_challenges.json").touch()
    made["maze_empty"].mkdir()
    for split in ("train", "test"):
        (made["maze_empty"] / f"{split}.csv").touch()
    return {name: str(path) for name, path in made.items()}


@pytest.mark.parametrize("command, arguments, expected", CASES,
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_bad_input_gets_one_error_line_and_exit_2(paths, command, arguments, expected):
    args = command.split() + [argument.format(**paths) for argument in arguments]
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 2, (args, result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [result.stderr.strip().splitlines()[-1]], result.stderr  # one line, the last
    assert errors[0].startswith("rr: error: ") and expected.format(**paths) in errors[0], errors[0]


def test_every_task_command_has_a_bad_input_case():
    groups = {name: command for name, command in main.commands.items() if name not in CORE_COMMANDS}
    assert set(groups) >= TASK_GROUPS, "a task plugin is not installed"
    commands = {f"{group} {name}" for group, command in groups.items() for name in command.commands}
    assert commands - {case[0] for case in CASES} == set()
