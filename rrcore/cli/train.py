"""``rr run``, ``rr validate``, ``rr sweep``, ``rr time-to-accuracy`` and ``rr data build``: the
commands that train, or prepare training."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from rrcore.cli.common import EXIT_CONFIG, EXIT_SIGNAL, fail, interrupted_before, set_option
from rrcore.contracts.registry import get_registry


@click.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@set_option
@click.option(
    "--resume", metavar="CHECKPOINT", help="Continue a run: 'latest', 'step_N', a run folder or a checkpoint folder."
)
@click.option("--run-dir", type=click.Path(file_okay=False), help="Run folder (default: run.out_dir/run.name).")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Start afresh in a run folder that holds another run, moving that run aside "
    "to FOLDER.old-N first (nothing is deleted).",
)
def run(experiment: str, overrides: tuple[str, ...], resume: str | None, run_dir: str | None, overwrite: bool) -> None:
    """Train EXPERIMENT (a TOML file); works alone or under torchrun.

    A run folder holds one run: config.toml, metrics.jsonl, checkpoints/, eval/ and
    resume.sh, the exact command that continues the run. A new run in a folder that
    holds another run is refused: continue that run with --resume latest, choose
    another --run-dir, or add --overwrite. So is a folder another rr run is writing
    (its lock file .rr.lock names the pid and host) and a non-empty folder that is
    not an rr run; --overwrite moves aside only an rr run. SIGINT (Ctrl-C) or SIGTERM
    saves a checkpoint, prints the command that continues the run, and exits.

    \b
    Exit codes (of every process under torchrun; torchrun itself then exits 1
    and lists each worker's code):
      0    finished
      1    failed: non-finite loss, unreadable checkpoint, a plugin error...
      2    bad input: experiment file or values, data set too small for the
           batch, CUDA asked for but absent, run folder taken, checkpoint
           that does not match the experiment; or no space left on device
           (the message names the file; the last checkpoint and config.toml
           are kept, the one being written removed)
      130  interrupted by SIGINT, after saving a checkpoint
      143  interrupted by SIGTERM, after saving a checkpoint
           (before training starts: nothing saved, no partial data set left)
    """
    from rrcore.contracts.config import load_experiment
    from rrcore.training.loop import train
    from rrcore.training.rundir import default_run_dir, resume_command

    if overwrite and resume:
        fail("--overwrite starts a new run and --resume continues one; use one of them", EXIT_CONFIG)
    resolved = load_experiment(experiment, list(overrides))
    folder = Path(run_dir) if run_dir else default_run_dir(resolved)
    command = resume_command(
        experiment,
        list(overrides),
        folder,
        int(os.environ.get("WORLD_SIZE", "1")),
        nodes=int(os.environ.get("GROUP_WORLD_SIZE", "1")),  # set by torchrun
        rendezvous_id=os.environ.get("TORCHELASTIC_RUN_ID", "rr"),
    )
    with interrupted_before("training started"):  # the trainer's own handlers save after
        result = train(resolved, resume=resume, run_dir=run_dir, overwrite=overwrite, command=command)
    if result.status == "interrupted":  # the trainer printed how to continue
        sys.exit(EXIT_SIGNAL + result.stop_signal)


@click.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@set_option
def validate(experiment: str, overrides: tuple[str, ...]) -> None:
    """Check EXPERIMENT and print the resolved config (every default filled in)."""
    from rrcore.contracts.config import dump_experiment, load_experiment
    from rrcore.training.weights import check_init_from

    resolved = load_experiment(experiment, list(overrides))
    check_init_from(resolved)
    click.echo(dump_experiment(resolved), nl=False)


@click.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option(
    "--grid",
    "grid",
    multiple=True,
    required=True,
    metavar="KEY=V1,V2,...",
    help="A key and the values to try, e.g. --grid train.lr=1e-4,3e-4 (repeatable: every combination runs).",
)
@set_option
@click.option(
    "--sweep-dir",
    type=click.Path(file_okay=False),
    help="Folder holding a run folder per grid point, sweep.json and sweep.md (default: run.out_dir/<run.name>-sweep).",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="KEY",
    help="Evaluation metric shown in the table, e.g. sudoku/exact_accuracy (repeatable; "
    "default: each evaluator's overall metrics). sweep.json keeps them all.",
)
@click.option(
    "--print-commands",
    is_flag=True,
    help="Print the rr run command of each grid point (for a scheduler) and run nothing.",
)
@click.option(
    "--overwrite", is_flag=True, help="Run in run folders that hold runs, moving each aside to FOLDER.old-N first."
)
def sweep(
    experiment: str,
    grid: tuple[str, ...],
    overrides: tuple[str, ...],
    sweep_dir: str | None,
    metrics: tuple[str, ...],
    print_commands: bool,
    overwrite: bool,
) -> None:
    """Train EXPERIMENT once for every combination of the --grid values, one run after another.

    Each run is `rr run EXPERIMENT --set ... --run-dir SWEEP_DIR/<values>` (named from its
    values, e.g. lr=3e-4,H_cycles=2, with run.name <run.name>-<values>). Every grid point is
    validated before the first run starts. A failed run is marked in the table and the
    sweep goes on. At the end the table of values, status, steps, time (of the whole
    run process) and final evaluation metrics is printed and written to SWEEP_DIR/sweep.md
    and sweep.json (also after each run). Ctrl-C or SIGTERM stops the run in progress as
    rr run does (a checkpoint and its resume command) and starts no further run.

    A sweep holds at most 10,000 runs; a larger grid is refused with its count, except
    with --print-commands, which then checks each value once (the other keys at their
    first value) and prints the commands as it goes.

    \b
    Exit codes:
      0    every run finished
      1    some run failed (the table says which)
      2    bad input: a --grid or --set, the experiment, a run folder in use
      130  stopped by SIGINT (143: SIGTERM)
    """
    from rrcore.contracts.config import load_experiment
    from rrcore.tools import sweep as sweeps

    with interrupted_before("any run started"):
        axes = [sweeps.parse_axis(text) for text in grid]
        total = sweeps.check_size(axes, streaming=print_commands)
        if total > 100:  # checking every run takes a while: say what is coming
            click.echo(f"rr: sweep of {total:,} runs ({sweeps.grid_shape(axes)})", err=True)
        resolved = load_experiment(experiment, list(overrides))
        folder = Path(sweep_dir) if sweep_dir else sweeps.sweep_folder(resolved)
        runs = _checked_runs(experiment, axes, list(overrides), folder, resolved.run.name, total)
        if print_commands:
            for run in runs:
                click.echo(shlex.join(["rr", *sweeps.run_command(experiment, run, overwrite)]))
            return
        if not overwrite:
            sweeps.check_unused(runs)
    code = sweeps.run_sweep(
        experiment,
        axes,
        list(overrides),
        runs,
        folder,
        list(metrics) or None,
        overwrite,
        say=lambda line: click.echo(line, err=True),
    )
    click.echo(sweeps.format_table(sweeps.table_rows(axes, runs, list(metrics) or None)))
    click.echo(f"rr: sweep table in {folder / 'sweep.md'} and {folder / 'sweep.json'}", err=True)
    sys.exit(code)


def _checked_runs(
    experiment: str, axes: list[Any], overrides: list[str], folder: Path, run_name: str, total: int
) -> Any:
    """The sweep's runs, validated: all of them, in a list; beyond ``MAX_RUNS`` (only
    --print-commands gets there) each value once, the runs then made one at a time."""
    from rrcore.tools import sweep as sweeps

    if total > sweeps.MAX_RUNS:
        sweeps.check(experiment, sweeps.edge_runs(axes, overrides, folder, run_name))
        return sweeps.iter_plan(axes, overrides, folder, run_name)
    runs = sweeps.plan(axes, overrides, folder, run_name)
    sweeps.check(experiment, runs)
    return runs


@click.command(name="time-to-accuracy")
@click.argument("experiments", nargs=-1, required=True, type=click.Path(dir_okay=False))
@set_option
@click.option(
    "--minutes",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Training budget of each experiment (compilation counted, evaluation not).",
)
@click.option(
    "--at",
    "marks",
    default="1,2,5,10,15,20",
    show_default=True,
    help="Training minutes at which to evaluate the held-out set (comma-separated).",
)
@click.option("--metric", default="sudoku/exact_accuracy", show_default=True, help="The accuracy the curve plots.")
@click.option(
    "--runs-dir",
    default="runs/time-to-accuracy",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where each experiment's run folder goes (RUNS_DIR/<experiment name>).",
)
@click.option(
    "--out",
    "out_dir",
    default="benchmarks/results",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where time-to-accuracy-<name>.json and the PNG go.",
)
@click.option("--collect", is_flag=True, help="Train nothing: write the curves of the run folders already there.")
@click.option(
    "--fit-steps",
    is_flag=True,
    help="First time a few steps of each experiment (rr bench, its own compile cache) and compress its "
    "schedule into the budget: train.max_steps as many steps as fit, warmup, EMA start and curriculum "
    "phases scaled alike (needs train.max_steps).",
)
def time_to_accuracy_command(
    experiments: tuple[str, ...],
    overrides: tuple[str, ...],
    minutes: float,
    marks: str,
    metric: str,
    runs_dir: str,
    out_dir: str,
    collect: bool,
    fit_steps: bool,
) -> None:
    """Train each EXPERIMENT for --minutes of wall-clock, one after another on this machine,
    evaluating the held-out set at the --at minutes, and write the curves (training minutes
    against --metric) to OUT/time-to-accuracy-<name>.json and one PNG.

    The training clock counts compilation and leaves evaluation out; --set applies to every
    experiment. A run that outlives a session can be read again with --collect.
    """
    from rrcore.tools.timecurve import summary_lines, time_to_accuracy

    try:
        at = sorted({float(m) for m in marks.split(",") if m.strip()})
    except ValueError:
        fail(f"--at {marks!r}: expected minutes separated by commas, e.g. 1,2,5,10", EXIT_CONFIG)
    if any(m <= 0 for m in at):
        fail(f"--at {marks!r}: minutes must be above 0", EXIT_CONFIG)
    for experiment in experiments:
        if not collect and not Path(experiment).is_file():
            fail(f"{experiment}: no such experiment file", EXIT_CONFIG)
    try:
        records = time_to_accuracy(
            list(experiments),
            minutes=minutes,
            marks=[m for m in at if m <= minutes],
            runs_dir=Path(runs_dir),
            out_dir=Path(out_dir),
            metric=metric,
            overrides=list(overrides),
            collect_only=collect,
            fit_steps=fit_steps,
        )
    except ValueError as error:
        fail(str(error), EXIT_CONFIG)
    except RuntimeError as error:
        fail(f"rr time-to-accuracy: {error}")
    for line in summary_lines(records, metric):
        click.echo(line)


class _DataBuildCommand(click.Command):
    """``rr data build``, whose help lists every data plugin's keys (from its config class)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from rrcore.tools.data_build import describe_plugins

        formatter.write_paragraph()
        formatter.write_text("Data plugins and their keys:")
        with formatter.indentation():
            for block in describe_plugins(get_registry()).split("\n\n"):
                formatter.write(
                    "\n" + "\n".join(" " * formatter.current_indent + line for line in block.splitlines()) + "\n"
                )


@click.group()
def data() -> None:
    """Data sets: build one as rr run would (rr data build)."""


@data.command(name="build", cls=_DataBuildCommand)
@click.argument("source", metavar="EXP_OR_PLUGIN")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a key of the data plugin's config, e.g. --set num_aug=10 (repeatable; "
    "data.KEY works too). The keys are listed below.",
)
@click.option(
    "--cache-dir",
    type=click.Path(),
    help="Cache folder (default: the experiment's run.cache_dir, else $RR_CACHE_DIR or ~/.cache/rr).",
)
def data_build(source: str, settings: tuple[str, ...], cache_dir: str | None) -> None:
    """Build (or find in the cache) a data set and print its folder.

    EXP_OR_PLUGIN is an experiment file, whose [data] section is built exactly as rr run
    builds it (the same folder), or the name of a data plugin, built with its defaults.
    --set changes single keys of either. A summary goes to stderr. Exit codes: 0 built,
    1 the builder failed, 2 bad input (a key, a value or an input file) or a full disk,
    130 or 143 interrupted by SIGINT or SIGTERM (the partial data set is removed).
    """
    from rrcore.tools.data_build import existing, resolve_request, summary
    from rrcore.training.build import build_dataset

    started = time.time()
    with interrupted_before("the data set was built"):
        request = resolve_request(source, settings, cache_dir, get_registry())
        before = existing(request)
        folder = build_dataset(request.spec, request.config, request.cache_dir)
    for line in summary(folder, started, before):
        click.echo(line, err=True)
    click.echo(str(folder))


COMMANDS = (run, validate, sweep, time_to_accuracy_command, data)
