"""rr-arc's hook implementations: the ``arc`` data set, evaluator and task, and ``rr arc``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rr_arc.builder import ArcDataConfig, build_dataset
from rr_arc.evaluator import ArcEvaluator, ArcEvaluatorConfig
from rrcore.api import DatasetSpec, EvaluatorSpec, TaskSpec, hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def rr_register_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="arc",
            factory=build_dataset,
            config_class=ArcDataConfig,
            description="ARC-AGI-1/2 and ConceptARC with dihedral, colour and translation augmentation",
        )
    ]


@hookimpl
def rr_register_evaluators() -> list[EvaluatorSpec]:
    return [
        EvaluatorSpec(
            name="arc",
            factory=ArcEvaluator,
            config_class=ArcEvaluatorConfig,
            description="ARC pass@K after de-augmenting and voting; writes an ARC Prize submission",
        )
    ]


@hookimpl
def rr_cli_commands(group: click.Group) -> None:
    from rr_arc.cli import arc

    group.add_command(arc)


@hookimpl
def rr_register_tasks() -> list[TaskSpec]:
    """Single ARC tasks for ``rr solve``, predictions and test-time selection (rr_arc.task);
    ``rr report`` draws them as grids in the ARC colours (rr_arc.view)."""
    from rr_arc.task import ArcPuzzleTask
    from rr_arc.view import ArcView

    return [
        TaskSpec(
            name="arc",
            factory=ArcPuzzleTask,
            description="an ARC task JSON (first test input; blank puzzle embedding); checks against "
            "its test output; dihedral and colour augmentations",
            view=ArcView,
        )
    ]
