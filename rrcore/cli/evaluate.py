"""``rr eval``, ``rr solve``, ``rr export`` and ``rr import``: the commands that use a trained model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from rrcore.base.validators import STEP_COUNT_MAX
from rrcore.cli.common import (
    EXIT_FAILED,
    bad_input,
    set_option,
    trajectories_option,
    trajectory_noise_option,
    trajectory_settings,
)


@click.command(name="export")
@click.argument("checkpoint", metavar="RUN_OR_CHECKPOINT")
@click.argument("directory", metavar="DIR", type=click.Path())
def export_command(checkpoint: str, directory: str) -> None:
    """Write the model of RUN_OR_CHECKPOINT to DIR (new or empty) for others to load.

    DIR gets model.safetensors (the weights evaluation uses: the EMA's when the run kept
    one; buffers such as the puzzle-embedding table included), config.toml (the resolved
    experiment), dataset.json (the data set's metadata), export.json and README.md
    (model plugin, parameters, step, source). rr eval, rr solve and [train] init_from
    accept the folder; loading it unpickles nothing. The folder is written as .DIR.partial
    beside DIR and renamed when complete; one left by an export that did not finish is
    removed (saying so), one holding other files is refused. Exit codes: 0 written, 1 a
    plugin failed, 2 bad input (DIR not empty, no or an unreadable checkpoint, weights
    that do not fit their config) or a full disk.
    """
    from rrcore.contracts.errors import CheckpointError
    from rrcore.tools.export import export

    with bad_input(CheckpointError):
        info = export(checkpoint, Path(directory))
    click.echo(
        f"rr: exported {info['model']!r} ({info['parameters']:,} parameters, step {info['step']}, "
        f"{info['weights']} weights) from {info['source']}",
        err=True,
    )
    click.echo(directory)


@click.command(name="eval")
@click.argument("checkpoint")
@set_option
@click.option("--output", type=click.Path(file_okay=False), help="Folder for evaluator outputs.")
@click.option(
    "--halting",
    type=click.Choice(["fixed", "adaptive"]),
    help="fixed: every puzzle runs the step cap (the papers' protocol); adaptive: each stops "
    "when its Q-head says halt and its batch slot takes the next puzzle (eval.halting).",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1, max=STEP_COUNT_MAX),
    help="Step cap (eval.max_steps; default act.halt_max_steps); above it: think longer.",
)
@click.option("--trace", is_flag=True, help="Add the prediction after every step to predictions.jsonl.")
@click.option(
    "--augmentations",
    type=click.IntRange(min=1),
    help="Also solve N augmented copies of each puzzle (the first the puzzle itself), map the "
    "answers back and report accuracy@1, majority vote and best-Q selection "
    "(eval.augmentations; needs a task plugin that augments).",
)
@trajectories_option
@trajectory_noise_option
def eval_command(
    checkpoint: str,
    overrides: tuple[str, ...],
    output: str | None,
    halting: str | None,
    max_steps: int | None,
    trace: bool,
    augmentations: int | None,
    trajectories: int | None,
    trajectory_noise: float | None,
) -> None:
    """Evaluate a saved CHECKPOINT (a run folder, checkpoint folder or rr export folder) on its test split.

    Use --set data.... to evaluate on another data set, --set evaluators.0.plugin=... for other metrics.
    Each evaluator writes its outputs (at least results.json) to OUTPUT/<evaluator>/, by default
    to eval/<checkpoint>-rr-eval/ in the run folder (runs/<export>-rr-eval/ for an export, whose
    test split is built from its config.toml's [data]). OUTPUT/predictions.jsonl holds one row per
    puzzle (input, prediction, label, correct, steps, q_halt) and OUTPUT/steps.json the accuracy
    at every step up to the cap (fixed halting) or the steps puzzles used (adaptive), also
    printed as a table on stderr. With --augmentations or --trajectories, a table of the
    test-time selection rules follows: accuracy@1 (the plain puzzle, no noise), majority
    vote, best Q, halt-first (adaptive halting) and the oracle (any copy right), each with
    its puzzles/s; the same figures are the vote/... results in the JSON and steps.json.
    Exit codes as rr run, except that a checkpoint rr eval cannot read (missing, damaged,
    or refused by torch.load's weights-only unpickler) is bad input, 2, as in rr solve,
    rr export, rr report and rr analyze.
    """
    from rrcore.contracts.errors import CheckpointError
    from rrcore.research import evaluate_into

    settings = (
        [f"eval.halting={halting}"] * bool(halting)
        + [f"eval.max_steps={max_steps}"] * bool(max_steps)
        + [f"eval.augmentations={augmentations}"] * bool(augmentations)
        + trajectory_settings(trajectories, trajectory_noise)
    )
    with bad_input(CheckpointError):
        results, output_dir = evaluate_into(checkpoint, (*overrides, *settings), output_dir=output, trace=trace)
    if results is not None:
        from rrcore.evaluation.selection import format_votes
        from rrcore.evaluation.tables import format_step_table

        click.echo(format_step_table(json.loads((output_dir / "steps.json").read_text())), err=True)
        if format_votes(results):
            click.echo(format_votes(results), err=True)
        click.echo(f"rr: evaluator outputs in {output_dir}", err=True)
        click.echo(json.dumps(results, indent=2, sort_keys=True))


@click.command()
@click.argument("checkpoint")
@click.argument("puzzle")
@set_option
@click.option(
    "--halting",
    type=click.Choice(["adaptive", "fixed"]),
    default="adaptive",
    show_default=True,
    help="adaptive: stop when the Q-head says halt; fixed: run the whole step cap.",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1, max=STEP_COUNT_MAX),
    help="Step cap (default eval.max_steps, else act.halt_max_steps); higher: think longer.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--trace", is_flag=True, help="Also show the answer after every step.")
@trajectories_option
@trajectory_noise_option
def solve(
    checkpoint: str,
    puzzle: str,
    overrides: tuple[str, ...],
    halting: str,
    max_steps: int | None,
    as_json: bool,
    trace: bool,
    trajectories: int | None,
    trajectory_noise: float | None,
) -> None:
    """Solve PUZZLE with the model of CHECKPOINT (a run folder, checkpoint folder or rr export folder).

    PUZZLE is the puzzle itself, a file holding it, or - for stdin, written as the task
    reads it (Sudoku: 81 or 16 characters with . for a blank, or a grid over 9 or 4
    lines; a maze: its text grid; ARC: a task JSON, whose first test input is solved;
    Rubik 2x2x2: a scramble such as "R U2 F'"). Prints the answer, the steps used, the
    Q-head's confidence sigmoid(q_halt) and the task's own check of the answer. The
    data set is not needed: the run (or export) folder keeps its metadata. With
    --trajectories K the puzzle runs K times (all but the first with noise on the latent)
    and the answer is the run the Q-head is most confident of, with how many of the K
    runs gave that answer.

    \b
    Exit codes:
      0    the answer passes the task's check, or there is nothing to check it
           against (an ARC task without its test output)
      1    it does not, or solving failed
      2    bad input: a puzzle the task cannot read, a missing checkpoint
    """
    from rrcore.base.cli_input import InputError
    from rrcore.contracts.errors import CheckpointError
    from rrcore.contracts.protocols import PuzzleError
    from rrcore.tools.solve import Solver, read_puzzle

    settings = trajectory_settings(trajectories, trajectory_noise)
    text = read_puzzle(puzzle, sys.stdin)
    with bad_input(CheckpointError):  # a missing checkpoint is bad input here
        solver = Solver(checkpoint, [*overrides, *settings])
        try:
            solution = solver.solve(text, max_steps=max_steps or 0, adaptive=halting == "adaptive")
        except PuzzleError as error:
            raise InputError(f"puzzle: {error}") from None
    _print_solution(solver.task, solution, as_json, trace)
    sys.exit(EXIT_FAILED if solution.check.ok is False else 0)


def _print_solution(task: Any, solution: Any, as_json: bool, trace: bool) -> None:
    """``rr solve``'s output: a JSON record, or the answer drawn by the task with one summary line."""
    if as_json:
        record = solution.as_dict()
        if trace:
            record["trace"] = [task.decode(row) for row in solution.trace]
        click.echo(json.dumps(record, indent=2))
    else:
        if solution.note:
            click.echo(f"note: {solution.note}")
        if trace:
            for number, row in enumerate(solution.trace, start=1):
                click.echo(f"step {number}: {task.decode(row)}")
        click.echo(solution.grid)
        verdict = {True: "ok", False: "FAILED", None: "-"}[solution.check.ok]
        agreement = ""
        if solution.trajectories > 1:
            agreement = f" | {solution.agreeing} of {solution.trajectories} trajectories gave this answer"
        click.echo(
            f"steps {solution.steps} of at most {solution.max_steps} | Q-confidence "
            f"{solution.confidence:.3f}{agreement} | check {verdict}: {solution.check.message}"
        )


@click.command(name="import")
@click.argument("checkpoint", metavar="REFERENCE_CHECKPOINT")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="The reference's config (default: all_config.yaml, config.yaml or .hydra/config.yaml beside the checkpoint).",
)
@click.option(
    "--experiment",
    type=click.Path(dir_okay=False),
    help="An rr experiment on the same data: the export keeps its [data] (the task rr solve uses), "
    "evaluators and loss; [model] and [act] come from the reference.",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    help="The data set folder the reference trained on (its train/dataset.json gives vocabulary, "
    "sequence length, puzzle identifiers; default: the config's data_path when it exists here).",
)
@click.option(
    "--seq-len", type=click.IntRange(min=1), help="Sequence length, when neither --data nor the tensors give it."
)
@set_option
def import_command(
    checkpoint: str,
    directory: str,
    config_file: str | None,
    experiment: str | None,
    data_dir: str | None,
    seq_len: int | None,
    overrides: tuple[str, ...],
) -> None:
    """Write a reference repository's checkpoint (HRM, TRM or URM) to DIR as an rr export.

    REFERENCE_CHECKPOINT is a step_N file saved by sapientinc/HRM, SamsungSAILMontreal/
    TinyRecursiveModels or zitian-gao/URM (UbiquantAI/URM), with or without torch.compile's
    _orig_mod. prefix, or a folder of them (the latest). It is read with
    torch.load(weights_only=True): a file holding code is refused, nothing in it is run.
    Every tensor is mapped by name and checked by shape; [model] and [act] come from the
    reference's config (--set overrides any key). rr eval, rr solve and [train] init_from
    accept DIR. Exit codes: 0 written, 1 a plugin failed, 2 bad input (a missing, extra or
    mis-shaped tensor, named; a refused file; DIR not empty) or a full disk.
    """
    from rrcore.contracts.errors import CheckpointError
    from rrcore.tools.reference_import import import_reference

    with bad_input(CheckpointError):
        info = import_reference(
            checkpoint,
            Path(directory),
            config=config_file,
            experiment=experiment,
            data=data_dir,
            seq_len=seq_len,
            overrides=list(overrides),
        )
    click.echo(
        f"rr: imported {info['model']!r} ({info['parameters']:,} parameters, step {info['step']}) from {info['source']}",
        err=True,
    )
    click.echo(directory)


COMMANDS = (eval_command, solve, export_command, import_command)
