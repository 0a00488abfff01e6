"""``rr bench``, ``rr report`` and ``rr analyze``: the commands that measure a run or an experiment."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from rrcore.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    bad_input,
    checkpoint_option,
    fail,
    run_argument,
    set_option,
)


@click.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@set_option
@click.option(
    "--steps", default=30, show_default=True, help="Timed training steps after warm-up (the median step is reported)."
)
@click.option("--warmup", default=5, show_default=True, help="Untimed steps first (compilation happens here).")
@click.option("--eval-batches", default=2, show_default=True, help="Timed evaluation batches (0: skip).")
@click.option("--json-out", type=click.Path(dir_okay=False), help="Also write the figures as JSON here.")
@click.option(
    "--profile",
    "profile_dir",
    type=click.Path(file_okay=False),
    help="Then profile --profile-steps more training steps: a table of where the time goes "
    "(GPU kernels by kind and name; CPU operators on a CPU) in DIR/profile.txt, the timeline in "
    "DIR/trace.json.gz. For every kernel on a GPU, add --set train.cuda_graphs=false.",
)
@click.option(
    "--profile-steps",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training steps --profile records.",
)
@click.option(
    "--largest-batch",
    is_flag=True,
    help="Then find the largest power-of-two multiple of the global batch that fits on the GPU, starting "
    "from the size this run's peak memory says fits (each size timed in its own process, without "
    "evaluation), and report examples/s at each size tried and at the largest that fits.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    help="Largest global batch --largest-batch tries (default: 16x the experiment's; never more than "
    "one epoch of the training set).",
)
@click.option(
    "--single-json",
    type=click.Path(exists=True, dir_okay=False),
    help="Figures of a one-process rr bench of the same experiment (its --json-out): "
    "adds the scaling efficiency of this run (under torchrun).",
)
def bench(
    experiment: str,
    overrides: tuple[str, ...],
    steps: int,
    warmup: int,
    eval_batches: int,
    json_out: str | None,
    profile_dir: str | None,
    profile_steps: int,
    largest_batch: bool,
    max_batch: int | None,
    single_json: str | None,
) -> None:
    """Measure training steps/s, examples/s, peak memory and evaluation speed of EXPERIMENT.

    Under torchrun: examples/s of each rank too, and with --single-json the scaling
    efficiency, examples/s with N ranks / (N x examples/s with one). Rank 0 prints.
    """
    from rrcore.base import distributed
    from rrcore.contracts.config import load_experiment
    from rrcore.tools.benchmark import benchmark, scaling

    if largest_batch and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        fail("--largest-batch runs in one process: run rr bench --largest-batch without torchrun", EXIT_CONFIG)
    single = None
    if single_json:
        try:
            single = json.loads(Path(single_json).read_text())
        except json.JSONDecodeError as error:
            fail(f"{single_json}: not JSON written by rr bench --json-out ({error})", EXIT_CONFIG)
    try:
        figures = benchmark(
            load_experiment(experiment, list(overrides)),
            steps=steps,
            warmup=warmup,
            eval_batches=eval_batches,
            profile_dir=Path(profile_dir) if profile_dir else None,
            profile_steps=profile_steps,
        )
    finally:
        distributed.teardown()
    is_main = int(os.environ.get("RANK", "0")) == 0
    search_error = None
    if largest_batch:
        search_error = _search_largest_batch(figures, experiment, overrides, steps, warmup, max_batch)
    if single is not None:
        try:
            figures = scaling(figures, single)
        except ValueError as error:
            if is_main:
                fail(f"{single_json}: {error}", EXIT_CONFIG)
            sys.exit(EXIT_CONFIG)
    if not is_main:
        return
    text = json.dumps(figures, indent=2)
    click.echo(text)
    if json_out:
        Path(json_out).write_text(text + "\n")
    if search_error:
        fail(search_error, EXIT_FAILED)


def _search_largest_batch(
    figures: dict, experiment: str, overrides: tuple[str, ...], steps: int, warmup: int, max_batch: int | None
) -> str | None:
    """``rr bench --largest-batch``: add the search's figures to this run's ``figures``;
    returns the error of a size that failed for a reason other than memory, kept in
    ``figures`` too (this run's own figures are not lost to it)."""
    from rrcore.tools.batchsearch import BatchSearchError, search

    start, epoch = figures["global_batch_size"], figures["train_examples_per_epoch"]
    # A batch larger than an epoch would repeat the training set within one step.
    limit = min(max_batch or 16 * start, epoch)
    figures["largest_batch_limit"] = limit
    if limit < 2 * start:
        why = f"--max-batch {max_batch}" if limit == max_batch else f"one epoch of the training set ({epoch} examples)"
        click.echo(f"rr bench --largest-batch: no larger batch to try: {why} is less than twice {start}", err=True)
    try:
        figures.update(search(experiment, overrides, start, steps, warmup, limit, figures.get("peak_memory_gib")))
    except BatchSearchError as error:
        figures["largest_batch_error"] = str(error)
        return str(error)
    return None


@click.command()
@run_argument
@set_option
@checkpoint_option
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="HTML file (default: RUN/report.html).")
@click.option(
    "--puzzles",
    default=4,
    show_default=True,
    type=click.IntRange(min=0),
    help="Solved puzzles and failed puzzles shown (each).",
)
@click.option(
    "--scan",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="Test examples run step by step to find them.",
)
def report(
    run_dir: str, overrides: tuple[str, ...], checkpoint: str, output: str | None, puzzles: int, scan: int
) -> None:
    """Write one self-contained HTML page about the run in RUN.

    The page holds the resolved config, the training curves, the logged evaluations
    (per rating bucket where the evaluator has them) and test puzzles, solved and
    failed, with the decoded answer after every ACT step of the checkpoint (changed
    and wrong cells marked, Q-values per step). No scripts or network needed to view it.
    """
    from rrcore.contracts.errors import CheckpointError
    from rrcore.tools.report import write_report
    from rrcore.tools.stepwise import RunInputError, open_run

    with bad_input(RunInputError, CheckpointError), open_run(run_dir, overrides, checkpoint) as opened:
        path = write_report(opened, Path(output) if output else Path(run_dir) / "report.html", puzzles, scan)
    click.echo(str(path))


@click.command()
@run_argument
@set_option
@checkpoint_option
@click.option(
    "--puzzles",
    default=100,
    show_default=True,
    type=click.IntRange(min=2),
    help="Test puzzles whose states are recorded.",
)
@click.option(
    "--untrained", is_flag=True, help="Analyse freshly initialised weights (the run's config and seed) as a baseline."
)
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    help="Folder for analysis.json and plots (default: RUN/analysis/<checkpoint or untrained>).",
)
def analyze(
    run_dir: str, overrides: tuple[str, ...], checkpoint: str, puzzles: int, untrained: bool, output: str | None
) -> None:
    """Record the recurrent states of the run in RUN on test puzzles and measure their dynamics.

    Prints and writes (analysis.json, residuals.png, participation_ratio.png,
    accuracy_per_step.png): forward residuals ||z_t - z_t-1|| per update of each
    named state, the participation ratio of each state's trajectories (PR_H / PR_L
    for high/low pairs), and the decoded answer's accuracy after each ACT step.
    """
    from rrcore.contracts.errors import CheckpointError
    from rrcore.tools import analyze as analysis
    from rrcore.tools import plots
    from rrcore.tools.stepwise import RunInputError, open_run, trace_steps

    with (
        bad_input(RunInputError, CheckpointError),
        open_run(run_dir, overrides, checkpoint, untrained=untrained, untrained_option=True) as opened,
    ):
        trace = trace_steps(opened, puzzles, record_states=True)
        result = {
            "source": f"{opened.experiment.run.name} ({opened.label})",
            "model": opened.experiment.model.plugin,
            **analysis.analyse(trace),
        }
        folder = Path(output) if output else Path(run_dir) / "analysis" / opened.label
    analysis.write_results(result, folder)
    if plots.have_matplotlib():
        analysis.write_plots(result, folder)
    else:
        click.echo(f"rr: no plots: matplotlib is not installed ({plots.INSTALL_HINT})", err=True)
    click.echo(analysis.summary(result))
    click.echo(f"rr: analysis in {folder}", err=True)


COMMANDS = (bench, report, analyze)
