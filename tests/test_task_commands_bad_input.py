"""Every command a task plugin adds to ``rr``, and ``rr data build`` of every task plugin's
data set, answers bad input with one line, exit 2.

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

from rrcore.cli.main import main

CORE_COMMANDS = {
    "run",
    "validate",
    "eval",
    "bench",
    "list-plugins",
    "solve",
    "report",
    "analyze",
    "data",
    "new-plugin",
    "sweep",
    "export",
    "time-to-accuracy",
    "import",
}
TASK_GROUPS = {"sudoku", "arc", "maze", "rubik"}

# (command, arguments, what the one error line must contain); {names} are paths made below.
CASES = [
    (
        "data build",
        ["sudoku", "--set", "train_path='{missing}'", "--set", "test_size=1"],
        "{missing}: no such puzzle file",
    ),
    (
        "data build",
        ["sudoku", "--set", "train_path='{folder}'", "--set", "test_size=1"],
        "{folder}: is a folder, not a puzzle file",
    ),
    (
        "data build",
        ["sudoku", "--set", "train_path='{empty}'", "--set", "test_size=1"],
        "{empty}: the puzzle file is empty",
    ),
    ("data build", ["{missing_toml}"], "{missing_toml}: no such experiment file"),
    ("data build", ["{folder}"], "{folder}: neither an experiment file nor a data plugin"),
    (
        "data build",
        [
            "sudoku",
            "--set",
            "source=generate",
            "--set",
            "size=4",
            "--set",
            "train_size=2",
            "--set",
            "test_size=1",
            "--cache-dir",
            "{file}",
        ],
        "{file}: is a file, not a cache folder",
    ),
    (
        "data build",
        ["sudoku", "--set", "train_path='{comments}'", "--set", "test_size=1"],
        "{comments}: only 0 usable puzzles for the test split",
    ),
    ("data build", ["sudoku", "--set", "num_augs=1"], "--set num_augs: not a key of data plugin 'sudoku'"),
    ("data build", ["sudoku", "--set", "size=nine"], "data.size: expected int, got str 'nine'"),
    ("sudoku label", ["{missing}"], "{missing}: no such puzzle file"),
    ("sudoku label", ["{folder}"], "{folder}: is a folder, not a puzzle file"),
    ("sudoku label", ["{empty}"], "{empty}: the puzzle file is empty"),
    ("sudoku label", ["{comments}"], "{comments}: no puzzles to label"),
    ("sudoku label", ["{puzzles}", "--output", "{folder}"], "{folder}: is a folder"),
    ("sudoku generate", ["--count", "0"], "--count must be at least 1"),
    ("sudoku generate", ["--size", "4", "--givens", "17", "--jobs", "1"], "givens must lie in [1, 16]"),
    ("data build", ["arc", "--set", "path='{missing}'"], "[data] path {missing}: no such folder"),
    ("data build", ["arc", "--set", "path='{file}'"], "[data] path {file}: is a file, not a folder"),
    ("data build", ["arc", "--set", "path='{arc}'", "--cache-dir", "{new}"], "{arc}: subset 'concept' not found"),
    (
        "data build",
        [
            "arc",
            "--set",
            "path='{arc_empty}'",
            "--set",
            "train_subsets=['training']",
            "--set",
            "test_subset=training",
            "--cache-dir",
            "{new}",
        ],
        "arc-agi_training_challenges.json: the file is empty",
    ),
    ("arc check-submission", ["{missing}"], "{missing}: no such submission file"),
    ("arc check-submission", ["{folder}"], "{folder}: is a folder, not a submission file"),
    ("arc check-submission", ["{empty}"], "{empty}: the submission file is empty"),
    ("arc check-submission", ["{file}"], "{file}: not valid JSON"),
    ("arc check-submission", ["{submission}", "--tasks", "{missing}"], "--tasks {missing}: no such"),
    ("arc check-submission", ["{submission}", "--tasks", "{empty}"], "{empty}: the file is empty"),
    ("arc check-submission", ["{submission}", "--tasks", "{folder}"], "{folder}: no <task_id>.json"),
    (
        "data build",
        ["maze", "--set", "source=csv", "--set", "csv_dir='{missing}'"],
        "{missing}: no such maze CSV folder",
    ),
    (
        "data build",
        ["maze", "--set", "source=csv", "--set", "csv_dir='{file}'"],
        "{file}: is a file, not a maze CSV folder",
    ),
    (
        "data build",
        ["maze", "--set", "source=csv", "--set", "csv_dir='{folder}'", "--cache-dir", "{new}"],
        "{folder}/train.csv: missing (csv_dir must hold train.csv and test.csv)",
    ),
    (
        "data build",
        ["maze", "--set", "source=csv", "--set", "csv_dir='{maze_empty}'", "--cache-dir", "{new}"],
        "{maze_empty}/train.csv: the file is empty",
    ),
    ("data build", ["maze", "--cache-dir", "{file}"], "{file}: is a file, not a cache folder"),
    (
        "data build",
        ["maze", "--set", "train_size=0"],
        "[data] train_size must be at least 1 with source = 'generate', got 0",
    ),
    ("maze bench", ["--count", "0"], "--count must be at least 1"),
    ("rubik table", ["--cache-dir", "{file}"], "{file}: is a file, not a cache folder"),
    ("data build", ["rubik", "--cache-dir", "{file}/below"], "{file} is a file, so it cannot hold a cache folder"),
    ("data build", ["rubik", "--set", "train_size=0"], "data.train_size = 0: must be >= 1"),
]

TASK = {"train": [{"input": [[1, 0]], "output": [[0, 1]]}], "test": [{"input": [[2, 0]]}]}


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    """Bad and good inputs: a missing path, an empty folder, an empty file, a small file, ..."""
    made = {
        "missing": tmp_path / "missing.txt",
        "missing_toml": tmp_path / "missing.toml",
        "new": tmp_path / "new",
        "folder": tmp_path / "folder",
        "empty": tmp_path / "empty.txt",
        "file": tmp_path / "a-file.txt",
        "comments": tmp_path / "comments.txt",
        "puzzles": tmp_path / "puzzles.txt",
        "submission": tmp_path / "submission.json",
        "arc": tmp_path / "arc",
        "arc_empty": tmp_path / "arc-empty",
        "maze_empty": tmp_path / "maze-empty",
    }
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


@pytest.mark.parametrize("command, arguments, expected", CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)])
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


def test_every_data_plugin_has_a_bad_input_case_of_rr_data_build():
    from rrcore.contracts.registry import get_registry

    plugins = set(get_registry().components["dataset"]) - {"built"}
    assert plugins >= TASK_GROUPS, "a task plugin is not installed"
    covered = {case[1][0] for case in CASES if case[0] == "data build"}
    assert plugins - covered == set()
