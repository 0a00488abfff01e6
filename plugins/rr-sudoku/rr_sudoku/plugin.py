"""rr's hooks for Sudoku: the ``sudoku`` data set, the ``sudoku`` evaluator and ``rr sudoku``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rr_sudoku.builder import SudokuDataConfig, batch_augmenter, build_dataset
from rr_sudoku.evaluator import SudokuEvalConfig, SudokuEvaluator
from rrcore.api import DatasetSpec, EvaluatorSpec, TaskSpec, hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def rr_register_datasets() -> list[DatasetSpec]:
    """The ``sudoku`` builder: puzzle files, CSV or generated 4x4/9x9 puzzles, augmented."""
    return [
        DatasetSpec(
            name="sudoku",
            factory=build_dataset,
            config_class=SudokuDataConfig,
            description="Sudoku 4x4/9x9 from puzzle files, CSV or the generator, with augmentation",
            batch_augmenter=batch_augmenter,
        )
    ]


@hookimpl
def rr_register_evaluators() -> list[EvaluatorSpec]:
    """The ``sudoku`` evaluator: blank/cell/exact accuracy and valid solutions by difficulty."""
    return [
        EvaluatorSpec(
            name="sudoku",
            factory=SudokuEvaluator,
            config_class=SudokuEvalConfig,
            description="Sudoku cell, exact and valid-solution accuracy by difficulty bucket",
        )
    ]


@hookimpl
def rr_cli_commands(group: click.Group) -> None:
    """Add ``rr sudoku label|generate``."""
    from rr_sudoku.cli import sudoku

    group.add_command(sudoku)


@hookimpl
def rr_register_tasks() -> list[TaskSpec]:
    """Single puzzles for ``rr solve``, predictions and test-time selection (rr_sudoku.task);
    ``rr report`` draws them as grids with boxes (rr_sudoku.view)."""
    from rr_sudoku.task import SudokuTask
    from rr_sudoku.view import SudokuView

    return [
        TaskSpec(
            name="sudoku",
            factory=SudokuTask,
            description="Sudoku puzzles as a line or a grid; checks the rules; symmetries for voting",
            view=SudokuView,
        )
    ]
