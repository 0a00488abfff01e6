"""Registration, ``rr data build sudoku`` and the ``rr sudoku`` commands."""

from __future__ import annotations

import rr_sudoku.plugin
from click.testing import CliRunner
from rr_sudoku.builder import SudokuDataConfig
from rr_sudoku.cli import sudoku

from rrcore.cli.main import main
from rrcore.contracts.registry import load_registry


def test_registers_dataset_and_evaluator():
    registry = load_registry(extra_modules=[rr_sudoku.plugin], entry_point_group=None)
    assert registry.get("dataset", "sudoku").config_class is SudokuDataConfig
    assert registry.get("evaluator", "sudoku").factory.__name__ == "SudokuEvaluator"


def test_build_label_and_generate_commands(tmp_path):
    runner = CliRunner()
    settings = ["source=generate", "size=4", "train_size=12", "test_size=4", "num_aug=2", "jobs=1"]
    result = runner.invoke(
        main,
        [
            "data",
            "build",
            "sudoku",
            "--cache-dir",
            str(tmp_path),
            *[arg for setting in settings for arg in ("--set", setting)],
        ],
    )
    assert result.exit_code == 0, result.output
    folder = result.stdout.strip().splitlines()[-1]
    assert folder.startswith(str(tmp_path)) and "train: 12 groups, 36 puzzles, 36 examples" in result.stderr
    assert "sudoku: writing train: 12/12 puzzles (100%)" in result.stderr  # plain progress, not a bar

    result = runner.invoke(sudoku, ["generate", "--size", "4", "--count", "3", "--jobs", "1"])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 3
    puzzles = tmp_path / "p.txt"
    puzzles.write_text("".join(line.split()[0] + "\n" for line in result.stdout.splitlines()) + "bad\n")
    result = runner.invoke(sudoku, ["label", str(puzzles), "--jobs", "1"])
    assert result.exit_code == 0 and "3 puzzles (1 malformed lines skipped)" in result.stdout
    assert "unique 3" in result.stdout

    result = runner.invoke(
        main, ["data", "build", "sudoku", "--set", f"train_path={str(puzzles)!r}", "--cache-dir", str(tmp_path)]
    )
    assert result.exit_code == 2 and "test_size" in result.output
