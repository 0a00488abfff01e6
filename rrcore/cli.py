"""The ``rr`` command line.

``rr run``, ``rr validate``, ``rr export``, ``rr import``, ``rr sweep``, ``rr eval``, ``rr bench``, ``rr list-plugins``, ``rr solve``,
``rr report``, ``rr analyze``, ``rr data build`` and ``rr new-plugin`` are the core's; plugins add their own sub-commands through
``rr_cli_commands``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from rrcore import __version__
from rrcore.validators import STEP_COUNT_MAX

EXIT_FAILED = 1
EXIT_CONFIG = 2  # bad input: the message says what to change
EXIT_SIGNAL = 128  # interrupted by signal N (after saving): 128 + N, as shells report it


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    click.echo(f"rr: error: {message}", err=True)
    sys.exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, as Ctrl-C raises KeyboardInterrupt: what
    cleans up after Ctrl-C (a data build's temporary folder, a pool of worker processes)
    cleans up after SIGTERM too. ``rr run`` takes SIGTERM over once training starts."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate_handler(owner: int) -> Any:
    """The SIGTERM handler of process ``owner``: raise :class:`Terminated` there; in a
    child forked before it set handlers of its own (a worker process starting), exit
    quietly as the default action would."""

    def terminate(signum: int, frame: Any) -> None:
        if os.getpid() != owner:
            os._exit(EXIT_SIGNAL + signum)
        raise Terminated(signum)

    return terminate


def _signal_number(interrupt: KeyboardInterrupt) -> int:
    return getattr(interrupt, "signum", signal.SIGINT)


class _RrGroup(click.Group):
    """The ``rr`` command group: for every command, plugin commands included, SIGTERM
    interrupts as Ctrl-C does (:class:`Terminated`), an interruption no command reported
    is one line (exit 128 + N), and so is a full disk (exit 2, the message names the file)."""

    def invoke(self, ctx: click.Context) -> Any:
        from rrcore.files import disk_full_error

        previous = None
        with contextlib.suppress(ValueError):  # signals can be set in the main thread only
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                previous = signal.signal(signal.SIGTERM, _terminate_handler(os.getpid()))
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            signum = _signal_number(interrupt)
            _fail(f"interrupted by {signal.Signals(signum).name}", EXIT_SIGNAL + signum)
        except (OSError, RuntimeError) as error:  # torch.save reports ENOSPC as a RuntimeError
            full = disk_full_error(error)
            if full is None:
                raise
            _fail(_disk_full_message(full), EXIT_CONFIG)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _disk_full_message(error: OSError) -> str:
    from rrcore.files import DiskFullError

    if isinstance(error, DiskFullError):
        return str(error)
    return "no space left on device" + (f" writing {error.filename}" if error.filename else "")


@contextlib.contextmanager
def _exit_codes(*bad_input: type[Exception]) -> Iterator[None]:
    """One line and the exit code for what a command can raise: a config error (and any of
    ``bad_input``) is bad input, 2; a training, checkpoint or data failure (or a batch size
    rr bench --largest-batch could not time), 1."""
    from rrcore.batchsearch import BatchSearchError
    from rrcore.checkpoint import CheckpointError
    from rrcore.config import ConfigError
    from rrcore.data import DataFormatError
    from rrcore.registry import RegistryError
    from rrcore.run import TrainingError

    try:
        yield
    except (ConfigError, RegistryError, *bad_input) as error:
        _fail(str(error), EXIT_CONFIG)
    except (TrainingError, CheckpointError, DataFormatError, BatchSearchError) as error:
        _fail(str(error))


@contextlib.contextmanager
def _interrupted_before(what: str) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt as interrupt:
        signum = _signal_number(interrupt)
        _fail(f"interrupted by {signal.Signals(signum).name} before {what}; nothing was saved", EXIT_SIGNAL + signum)


def _registry():
    from rrcore.registry import RegistryError, get_registry

    try:
        return get_registry()
    except RegistryError as error:
        _fail(str(error), EXIT_CONFIG)


def _load(experiment: str, overrides: tuple[str, ...]):
    from rrcore.config import ConfigError, load_experiment

    try:
        return load_experiment(experiment, list(overrides), _registry())
    except ConfigError as error:
        _fail(str(error), EXIT_CONFIG)


set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a key of the experiment, e.g. --set train.lr=3e-4 (repeatable).",
)


@click.group(cls=_RrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rr")
def main() -> None:
    """rr: recursive reasoning models (HRM, TRM, URM) from TOML experiment files."""


@main.command()
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
    from rrcore.rundir import default_run_dir, resume_command
    from rrcore.trainer import train

    if overwrite and resume:
        _fail("--overwrite starts a new run and --resume continues one; use one of them", EXIT_CONFIG)
    resolved = _load(experiment, overrides)
    folder = Path(run_dir) if run_dir else default_run_dir(resolved)
    command = resume_command(
        experiment,
        list(overrides),
        folder,
        int(os.environ.get("WORLD_SIZE", "1")),
        nodes=int(os.environ.get("GROUP_WORLD_SIZE", "1")),  # set by torchrun
        rendezvous_id=os.environ.get("TORCHELASTIC_RUN_ID", "rr"),
    )
    with _exit_codes(), _interrupted_before("training started"):  # the trainer's own handlers save after
        result = train(resolved, resume=resume, run_dir=run_dir, overwrite=overwrite, command=command)
    if result.status == "interrupted":  # the trainer printed how to continue
        sys.exit(EXIT_SIGNAL + result.stop_signal)


@main.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@set_option
def validate(experiment: str, overrides: tuple[str, ...]) -> None:
    """Check EXPERIMENT and print the resolved config (every default filled in)."""
    from rrcore.config import dump_experiment
    from rrcore.export import check_init_from

    resolved = _load(experiment, overrides)
    with _exit_codes():
        check_init_from(resolved)
    click.echo(dump_experiment(resolved), nl=False)


@main.command(name="export")
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
    from rrcore.checkpoint import CheckpointError
    from rrcore.export import export

    with _exit_codes(CheckpointError):
        info = export(checkpoint, Path(directory), _registry())
    click.echo(
        f"rr: exported {info['model']!r} ({info['parameters']:,} parameters, step {info['step']}, "
        f"{info['weights']} weights) from {info['source']}",
        err=True,
    )
    click.echo(directory)


@main.command()
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
    from rrcore import sweep as sweeps

    with _exit_codes(), _interrupted_before("any run started"):
        axes = [sweeps.parse_axis(text) for text in grid]
        total = sweeps.check_size(axes, streaming=print_commands)
        if total > 100:  # checking every run takes a while: say what is coming
            click.echo(f"rr: sweep of {total:,} runs ({sweeps.grid_shape(axes)})", err=True)
        resolved = _load(experiment, overrides)
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
    from rrcore import sweep as sweeps

    if total > sweeps.MAX_RUNS:
        sweeps.check(experiment, sweeps.edge_runs(axes, overrides, folder, run_name), _registry())
        return sweeps.iter_plan(axes, overrides, folder, run_name)
    runs = sweeps.plan(axes, overrides, folder, run_name)
    sweeps.check(experiment, runs, _registry())
    return runs


trajectories_option = click.option(
    "--trajectories",
    type=int,
    metavar="K",
    help="Also run each puzzle K times, all but the first with Gaussian noise on the model's "
    "latent, and select among the K answers (eval.trajectories; needs a noise: "
    "--trajectory-noise or eval.trajectory_noise; where it goes: eval.trajectory_noise_at).",
)
trajectory_noise_option = click.option(
    "--trajectory-noise",
    type=float,
    metavar="STD",
    help="Standard deviation of the --trajectories noise (eval.trajectory_noise).",
)


def _trajectory_settings(trajectories: int | None, noise: float | None) -> list[str]:
    """``--set`` strings for --trajectories and --trajectory-noise, refusing a bad value
    in one line that names the option."""
    if trajectories is not None and trajectories < 1:
        _fail(f"--trajectories {trajectories}: must be >= 1 (the runs of each puzzle; 1: no selection)", EXIT_CONFIG)
    if noise is not None and not noise >= 0:
        _fail(f"--trajectory-noise {noise:g}: must be a number >= 0 (a standard deviation)", EXIT_CONFIG)
    settings = []
    if trajectories is not None:
        settings.append(f"eval.trajectories={trajectories}")
    if noise is not None:
        settings.append(f"eval.trajectory_noise={noise!r}")
    return settings


@main.command(name="eval")
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
    from rrcore.checkpoint import CheckpointError
    from rrcore.research import evaluate_into

    settings = (
        [f"eval.halting={halting}"] * bool(halting)
        + [f"eval.max_steps={max_steps}"] * bool(max_steps)
        + [f"eval.augmentations={augmentations}"] * bool(augmentations)
        + _trajectory_settings(trajectories, trajectory_noise)
    )
    with _exit_codes(CheckpointError):
        results, output_dir = evaluate_into(checkpoint, (*overrides, *settings), output_dir=output, trace=trace)
    if results is not None:
        from rrcore.inference import format_step_table, format_votes

        click.echo(format_step_table(json.loads((output_dir / "steps.json").read_text())), err=True)
        if format_votes(results):
            click.echo(format_votes(results), err=True)
        click.echo(f"rr: evaluator outputs in {output_dir}", err=True)
        click.echo(json.dumps(results, indent=2, sort_keys=True))


@main.command()
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
    from rrcore import distributed
    from rrcore.benchmark import benchmark, scaling

    if largest_batch and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _fail("--largest-batch runs in one process: run rr bench --largest-batch without torchrun", EXIT_CONFIG)
    single = None
    if single_json:
        try:
            single = json.loads(Path(single_json).read_text())
        except json.JSONDecodeError as error:
            _fail(f"{single_json}: not JSON written by rr bench --json-out ({error})", EXIT_CONFIG)
    try:
        with _exit_codes():
            figures = benchmark(
                _load(experiment, overrides),
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
                _fail(f"{single_json}: {error}", EXIT_CONFIG)
            sys.exit(EXIT_CONFIG)
    if not is_main:
        return
    text = json.dumps(figures, indent=2)
    click.echo(text)
    if json_out:
        Path(json_out).write_text(text + "\n")
    if search_error:
        _fail(search_error, EXIT_FAILED)


def _search_largest_batch(
    figures: dict, experiment: str, overrides: tuple[str, ...], steps: int, warmup: int, max_batch: int | None
) -> str | None:
    """``rr bench --largest-batch``: add the search's figures to this run's ``figures``;
    returns the error of a size that failed for a reason other than memory, kept in
    ``figures`` too (this run's own figures are not lost to it)."""
    from rrcore.batchsearch import BatchSearchError, search

    start, epoch = figures["global_batch_size"], figures["train_examples_per_epoch"]
    # A batch larger than an epoch would repeat the training set within one step.
    limit = min(max_batch or 16 * start, epoch)
    figures["largest_batch_limit"] = limit
    if limit < 2 * start:
        why = f"--max-batch {max_batch}" if limit == max_batch else f"one epoch of the training set ({epoch} examples)"
        click.echo(f"rr bench --largest-batch: no larger batch to try: {why} is less than twice {start}", err=True)
    with _exit_codes():
        try:
            figures.update(search(experiment, overrides, start, steps, warmup, limit, figures.get("peak_memory_gib")))
        except BatchSearchError as error:
            figures["largest_batch_error"] = str(error)
            return str(error)
    return None


@main.command(name="list-plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_plugins(as_json: bool) -> None:
    """List installed plugins and what they register (and plugins that failed to load).

    A name two plugins register for one kind cannot be used; each such name ends the list
    with an error line naming both distributions, and the exit code is 2.
    """
    registry = _registry()
    rows = [
        {
            "kind": spec.kind,
            "name": spec.name,
            "distribution": spec.distribution,
            "version": spec.version,
            "description": spec.description,
        }
        for spec in registry.all_components()
    ]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "components": rows,
                    "plugins": [
                        {
                            "name": p.name,
                            "module": p.module,
                            "distribution": p.distribution,
                            "version": p.version,
                            "hooks": list(p.hooks),
                        }
                        for p in registry.plugins
                    ],
                    "failures": [
                        {"name": f.name, "distribution": f.distribution, "version": f.version, "error": f.error}
                        for f in registry.failures
                    ],
                    "conflicts": registry.conflicts(),
                },
                indent=2,
            )
        )
        if registry.conflicts():
            sys.exit(EXIT_CONFIG)
        return
    headers = ("kind", "name", "distribution", "version", "description")
    table = [headers] + [tuple(r[h] for h in headers) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(headers) - 1)]
    for row in table:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    for failure in registry.failures:
        click.echo(
            f"\nfailed to load plugin {failure.name!r} ({failure.distribution} {failure.version}): {failure.error}",
            err=True,
        )
    for conflict in registry.conflicts():
        click.echo(f"rr: error: {conflict}", err=True)
    if registry.conflicts():
        sys.exit(EXIT_CONFIG)


@main.command()
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
    from rrcore.checkpoint import CheckpointError
    from rrcore.cli_input import InputError
    from rrcore.protocols import PuzzleError
    from rrcore.solve import Solver, read_puzzle

    settings = _trajectory_settings(trajectories, trajectory_noise)
    text = read_puzzle(puzzle, sys.stdin)
    with _exit_codes(CheckpointError):  # a missing checkpoint is bad input here
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


run_argument = click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
checkpoint_option = click.option(
    "--checkpoint",
    default="latest",
    show_default=True,
    help="Which checkpoint of the run: 'latest', 'step_N' or a checkpoint folder.",
)


@main.command()
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
    from rrcore.checkpoint import CheckpointError
    from rrcore.report import write_report
    from rrcore.stepwise import RunInputError, open_run

    with _exit_codes(RunInputError, CheckpointError), open_run(run_dir, overrides, checkpoint) as opened:
        path = write_report(opened, Path(output) if output else Path(run_dir) / "report.html", puzzles, scan)
    click.echo(str(path))


@main.command()
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
    from rrcore import analyze as analysis
    from rrcore import plots
    from rrcore.checkpoint import CheckpointError
    from rrcore.stepwise import RunInputError, open_run, trace_steps

    with (
        _exit_codes(RunInputError, CheckpointError),
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


class _DataBuildCommand(click.Command):
    """``rr data build``, whose help lists every data plugin's keys (from its config class)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from rrcore.databuild import describe_plugins

        formatter.write_paragraph()
        formatter.write_text("Data plugins and their keys:")
        with formatter.indentation():
            for block in describe_plugins(_registry()).split("\n\n"):
                formatter.write(
                    "\n" + "\n".join(" " * formatter.current_indent + line for line in block.splitlines()) + "\n"
                )


@main.group()
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
    import time

    from rrcore.databuild import build, existing, resolve_request, summary

    started = time.time()
    with _exit_codes(), _interrupted_before("the data set was built"):
        request = resolve_request(source, settings, cache_dir, _registry())
        before = existing(request)
        folder = build(request)
    for line in summary(folder, started, before):
        click.echo(line, err=True)
    click.echo(str(folder))


@main.command(name="new-plugin")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["model", "task"]),
    required=True,
    help="model: an architecture; task: a data set and its evaluator.",
)
@click.option("--output", type=click.Path(), help="Folder to write (new or empty; default: ./rr-NAME).")
@click.option(
    "--author",
    help='The author pyproject.toml names (PyPI shows it): "Name <email>" or "Name" (default: "The rr-NAME authors").',
)
@click.option("--url", help="Where the code lives: pyproject.toml's Repository link (default: none, a comment).")
def new_plugin(name: str, kind: str, output: str | None, author: str | None, url: str | None) -> None:
    """Write a plugin package NAME to start from.

    The package is pip-installable: pyproject.toml with the rr entry point, plugin.py, a
    config class, a small working model or task, a README with its keys and an example
    experiment, and tests that run rr's conformance kit (rrcore.testing).

    NAME (lowercase letters, digits, '_') is the entry point and the name the components are
    registered under; the package is rr_NAME, the distribution rr-NAME.
    """
    from rrcore.scaffold import REGISTERS, PluginNames, ScaffoldError, check_output, project_metadata, render

    try:
        names = PluginNames.of(name)
        folder = Path(output) if output else Path(names.dist)
        check_output(folder)
        metadata = project_metadata(names, author, url)
    except ScaffoldError as error:
        _fail(str(error), EXIT_CONFIG)
    registry = _registry()
    for component in REGISTERS[kind]:
        taken = registry.components[component].get(name) or next(
            iter(registry.ambiguous[component].get(name, [])), None
        )
        if taken is not None:
            _fail(
                f"NAME {name!r}: a {component} plugin of that name is installed ({taken.distribution} "
                f"{taken.version}); choose another name",
                EXIT_CONFIG,
            )
    written = render(kind, names, folder, metadata)
    click.echo(f"rr: wrote {kind} plugin {name!r} to {folder} ({len(written)} files); next:")
    example = folder / "examples" / ("sudoku4x4.toml" if kind == "model" else f"{name}-trm.toml")
    for line in (
        f"pip install -e {folder}",
        f"python -m pytest {folder / 'tests'}",
        "rr list-plugins",
        f"rr run {example}",
    ):
        click.echo(f"  {line}")


@main.command(name="time-to-accuracy")
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
    from rrcore.timecurve import summary_lines, time_to_accuracy

    try:
        at = sorted({float(m) for m in marks.split(",") if m.strip()})
    except ValueError:
        _fail(f"--at {marks!r}: expected minutes separated by commas, e.g. 1,2,5,10", EXIT_CONFIG)
    if any(m <= 0 for m in at):
        _fail(f"--at {marks!r}: minutes must be above 0", EXIT_CONFIG)
    for experiment in experiments:
        if not collect and not Path(experiment).is_file():
            _fail(f"{experiment}: no such experiment file", EXIT_CONFIG)
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
        _fail(str(error), EXIT_CONFIG)
    except RuntimeError as error:
        _fail(f"rr time-to-accuracy: {error}")
    for line in summary_lines(records, metric):
        click.echo(line)


@main.command(name="import")
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
    from rrcore.checkpoint import CheckpointError
    from rrcore.reference_import import import_reference

    with _exit_codes(CheckpointError):
        info = import_reference(
            checkpoint,
            Path(directory),
            config=config_file,
            experiment=experiment,
            data=data_dir,
            seq_len=seq_len,
            overrides=list(overrides),
            registry=_registry(),
        )
    click.echo(
        f"rr: imported {info['model']!r} ({info['parameters']:,} parameters, step {info['step']}) from {info['source']}",
        err=True,
    )
    click.echo(directory)


def _add_plugin_commands() -> None:
    try:
        from rrcore.registry import get_registry

        get_registry().hook.rr_cli_commands(group=main)
    except Exception as error:  # a broken plugin must not take the CLI down
        click.echo(f"rr: warning: plugin commands unavailable: {error}", err=True)


_add_plugin_commands()
