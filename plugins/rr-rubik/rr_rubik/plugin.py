"""rr-rubik's hook implementations: the ``rubik`` data set, evaluator and task, ``rr rubik``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rr_rubik.builder import RubikDataConfig, build_dataset
from rr_rubik.evaluator import RubikEvalConfig, RubikEvaluator
from rrcore.api import DatasetSpec, EvaluatorSpec, TaskSpec, hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def rr_register_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="rubik",
            factory=build_dataset,
            config_class=RubikDataConfig,
            description="2x2x2 cube: scrambled state -> optimal half-turn solution (padded to 11)",
        )
    ]


@hookimpl
def rr_register_evaluators() -> list[EvaluatorSpec]:
    return [
        EvaluatorSpec(
            name="rubik",
            factory=RubikEvaluator,
            config_class=RubikEvalConfig,
            description="2x2x2 solve and optimal rates, checked by simulating the predicted moves",
        )
    ]


@hookimpl
def rr_register_tasks() -> list[TaskSpec]:
    """Single scrambles for ``rr solve`` and readable predictions (rr_rubik.task);
    ``rr report`` draws the cube's faces and the predicted moves (rr_rubik.view)."""
    from rr_rubik.task import RubikPuzzleTask
    from rr_rubik.view import RubikView

    return [
        TaskSpec(
            name="rubik",
            factory=RubikPuzzleTask,
            description="a 2x2x2 scramble (U R F half-turn moves) in, solving moves out; checks the "
            "cube is solved; no augmentations",
            view=RubikView,
        )
    ]


@hookimpl
def rr_cli_commands(group: click.Group) -> None:
    """Add ``rr rubik table``."""
    from rr_rubik.cli import rubik_group

    group.add_command(rubik_group)
