"""rr-maze's hook implementations: the ``maze`` data set and evaluator, ``rr maze``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rr_maze.builder import MazeDataConfig, build_dataset
from rr_maze.evaluator import MazeEvalConfig, MazeEvaluator
from rrcore.api import DatasetSpec, EvaluatorSpec, TaskSpec, hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def rr_register_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="maze",
            factory=build_dataset,
            config_class=MazeDataConfig,
            description="Maze-Hard style mazes (generated, or the hub CSV files): mark a shortest path",
        )
    ]


@hookimpl
def rr_register_evaluators() -> list[EvaluatorSpec]:
    return [
        EvaluatorSpec(
            name="maze",
            factory=MazeEvaluator,
            config_class=MazeEvalConfig,
            description="maze exact accuracy and valid-shortest-path rate (any shortest path counts)",
        )
    ]


@hookimpl
def rr_register_tasks() -> list[TaskSpec]:
    """Single mazes for ``rr solve``, predictions and test-time selection (rr_maze.task);
    ``rr report`` draws them in colour, the predicted path over them (rr_maze.view)."""
    from rr_maze.task import MazeTask
    from rr_maze.view import MazeView

    return [
        TaskSpec(
            name="maze",
            factory=MazeTask,
            description="mazes as a text grid; checks for a shortest path; symmetries for voting",
            view=MazeView,
        )
    ]


@hookimpl
def rr_cli_commands(group: click.Group) -> None:
    """Add ``rr maze bench``."""
    from rr_maze.cli import maze_group

    group.add_command(maze_group)
