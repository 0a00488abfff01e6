"""Registration and the ``rr sudoku`` commands."""

from __future__ import annotations

import rr_sudoku.plugin
from click.testing import CliRunner
from rr_sudoku.builder import SudokuDataConfig
from rr_sudoku.cli import sudoku

from rrcore.registry import load_registry


def test_registers_dataset_and_evaluator():
    registry = load_registry(extra_modules=[rr_sudoku.plugin], entry_point_group=None)
    assert registry.get("dataset", "sudoku").config_class is SudokuDataConfig
    assert registry.get("evaluator", "sudoku").factory.__name__ == "SudokuEvaluator"


def test_build_label_and_generate_commands(tmp_path):
    runner = CliRunner()
    result = runner.invoke(sudoku, ["build", "--source", "generate", "--size", "4", "--train-size", "12",
                                    "--test-size", "4", "--num-aug", "2", "--jobs", "1",
                                    "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = result.stdout.strip().splitlines()[-1]
    assert folder.startswith(str(tmp_path)) and "train: 12 puzzles, 36 examples" in result.output

    result = runner.invoke(sudoku, ["generate", "--size", "4", "--count", "3", "--jobs", "1"])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 3
    puzzles = tmp_path / "p.txt"
    puzzles.write_text("".join(line.split()[0] + "\n" for line in result.stdout.splitlines()) + "bad\n")
    result = runner.invoke(sudoku, ["label", str(puzzles), "--jobs", "1"])
    assert result.exit_code == 0 and "3 puzzles (1 malformed lines skipped)" in result.stdout
    assert "unique 3" in result.stdout

    result = runner.invoke(sudoku, ["build", "--train-path", str(puzzles), "--cache-dir", str(tmp_path)])
    assert result.exit_code != 0 and "test_size" in result.output
