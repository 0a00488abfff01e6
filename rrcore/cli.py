"""The ``rr`` command line.

``rr run``, ``rr validate``, ``rr eval``, ``rr bench`` and ``rr list-plugins`` are
the core's; plugins add their own sub-commands through ``rr_cli_commands``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import click

from rrcore import __version__

EXIT_FAILED = 1
EXIT_CONFIG = 2  # bad input: the message says what to change
EXIT_SIGNAL = 128  # interrupted by signal N (after saving): 128 + N, as shells report it


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    click.echo(f"rr: error: {message}", err=True)
    sys.exit(code)


def _registry():
    from rrcore.registry import RegistryError, get_registry

    try:
        return get_registry()
    except RegistryError as error:
        _fail(str(error))


def _load(experiment: str, overrides: tuple[str, ...]):
    from rrcore.config import ConfigError, load_experiment

    try:
        return load_experiment(experiment, list(overrides), _registry())
    except ConfigError as error:
        _fail(str(error), EXIT_CONFIG)


set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a key of the experiment, e.g. --set train.lr=3e-4 (repeatable).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rr")
def main() -> None:
    """rr: recursive reasoning models (HRM, TRM, URM) from TOML experiment files."""


@main.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@set_option
@click.option("--resume", metavar="CHECKPOINT",
              help="Continue a run: 'latest', 'step_N', a run folder or a checkpoint folder.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Run folder (default: run.out_dir/run.name).")
@click.option("--overwrite", is_flag=True,
              help="Start afresh in a run folder that holds another run, moving that run aside "
                   "to FOLDER.old-N first (nothing is deleted).")
def run(experiment: str, overrides: tuple[str, ...], resume: str | None, run_dir: str | None,
        overwrite: bool) -> None:
    """Train EXPERIMENT (a TOML file); works alone or under torchrun.

    A run folder holds one run: config.toml, metrics.jsonl, checkpoints/, eval/ and
    resume.sh, the exact command that continues the run. A new run in a folder that
    holds another run is refused: continue that run with --resume latest, choose
    another --run-dir, or add --overwrite. SIGINT (Ctrl-C) or SIGTERM saves a
    checkpoint, prints the command that continues the run, and exits.

    \b
    Exit codes (of every process under torchrun; torchrun itself then exits 1
    and lists each worker's code):
      0    finished
      1    failed: non-finite loss, unreadable checkpoint, a plugin error...
      2    bad input: experiment file or values, data set too small for the
           batch, CUDA asked for but absent, run folder taken, checkpoint
           that does not match the experiment
      130  interrupted by SIGINT, after saving a checkpoint
      143  interrupted by SIGTERM, after saving a checkpoint
    """
    from rrcore.checkpoint import CheckpointError
    from rrcore.config import ConfigError
    from rrcore.data import DataFormatError
    from rrcore.rundir import default_run_dir, resume_command
    from rrcore.trainer import TrainingError, train

    if overwrite and resume:
        _fail("--overwrite starts a new run and --resume continues one; use one of them", EXIT_CONFIG)
    resolved = _load(experiment, overrides)
    folder = Path(run_dir) if run_dir else default_run_dir(resolved)
    command = resume_command(experiment, list(overrides), folder, int(os.environ.get("WORLD_SIZE", "1")),
                             nodes=int(os.environ.get("GROUP_WORLD_SIZE", "1")),  # set by torchrun
                             rendezvous_id=os.environ.get("TORCHELASTIC_RUN_ID", "rr"))
    try:
        result = train(resolved, resume=resume, run_dir=run_dir, overwrite=overwrite, command=command)
    except ConfigError as error:
        _fail(str(error), EXIT_CONFIG)
    except (TrainingError, CheckpointError, DataFormatError) as error:
        _fail(str(error))
    except KeyboardInterrupt:  # before the trainer's own handlers were in place: nothing to save
        _fail("interrupted before training started; nothing was saved", EXIT_SIGNAL + signal.SIGINT)
    if result.status == "interrupted":
        if int(os.environ.get("RANK", "0")) == 0:
            name = signal.Signals(result.stop_signal).name
            click.echo(f"rr: interrupted by {name} at step {result.step} (checkpoint saved; the command is also "
                       f"in {folder / 'resume.sh'}); continue with: {command}", err=True)
        sys.exit(EXIT_SIGNAL + result.stop_signal)


@main.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@set_option
def validate(experiment: str, overrides: tuple[str, ...]) -> None:
    """Check EXPERIMENT and print the resolved config (every default filled in)."""
    from rrcore.config import dump_experiment

    click.echo(dump_experiment(_load(experiment, overrides)), nl=False)


@main.command(name="eval")
@click.argument("checkpoint")
@set_option
@click.option("--output", type=click.Path(file_okay=False), help="Folder for evaluator outputs.")
def eval_command(checkpoint: str, overrides: tuple[str, ...], output: str | None) -> None:
    """Evaluate a saved CHECKPOINT (a run folder or checkpoint folder) on its test split.

    Use --set data.... to evaluate on another data set, --set evaluators.0.plugin=... for other metrics.
    Each evaluator writes its outputs (at least results.json) to OUTPUT/<evaluator>/, by default
    to eval/<checkpoint>-rr-eval/ in the run folder. Exit codes as rr run.
    """
    from rrcore.checkpoint import CheckpointError, resolve_checkpoint
    from rrcore.config import ConfigError
    from rrcore.data import DataFormatError
    from rrcore.trainer import TrainingError, evaluate_checkpoint

    try:
        path = resolve_checkpoint(checkpoint)
        resolved = _load(str(path / "config.toml"), overrides)
        output_dir = Path(output) if output else path.parent.parent / "eval" / f"{path.name}-rr-eval"
        results = evaluate_checkpoint(resolved, path, output_dir)
    except ConfigError as error:
        _fail(str(error), EXIT_CONFIG)
    except (TrainingError, CheckpointError, DataFormatError) as error:
        _fail(str(error))
    if results is not None:
        click.echo(f"rr: evaluator outputs in {output_dir}", err=True)
        click.echo(json.dumps(results, indent=2, sort_keys=True))


@main.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@set_option
@click.option("--steps", default=30, show_default=True,
              help="Timed training steps after warm-up (the median step is reported).")
@click.option("--warmup", default=5, show_default=True, help="Untimed steps first (compilation happens here).")
@click.option("--eval-batches", default=2, show_default=True, help="Timed evaluation batches (0: skip).")
@click.option("--json-out", type=click.Path(dir_okay=False), help="Also write the figures as JSON here.")
@click.option("--single-json", type=click.Path(exists=True, dir_okay=False),
              help="Figures of a one-process rr bench of the same experiment (its --json-out): "
                   "adds the scaling efficiency of this run (under torchrun).")
def bench(experiment: str, overrides: tuple[str, ...], steps: int, warmup: int, eval_batches: int,
          json_out: str | None, single_json: str | None) -> None:
    """Measure training steps/s, examples/s, peak memory and evaluation speed of EXPERIMENT.

    Under torchrun: examples/s of each rank too, and with --single-json the scaling
    efficiency, examples/s with N ranks / (N x examples/s with one). Rank 0 prints.
    """
    from rrcore import distributed
    from rrcore.benchmark import benchmark, scaling

    single = None
    if single_json:
        try:
            single = json.loads(Path(single_json).read_text())
        except json.JSONDecodeError as error:
            _fail(f"{single_json}: not JSON written by rr bench --json-out ({error})", EXIT_CONFIG)
    try:
        figures = benchmark(_load(experiment, overrides), steps=steps, warmup=warmup,
                            eval_batches=eval_batches)
    finally:
        distributed.teardown()
    is_main = int(os.environ.get("RANK", "0")) == 0
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


@main.command(name="list-plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_plugins(as_json: bool) -> None:
    """List installed plugins and what they register (and plugins that failed to load)."""
    registry = _registry()
    rows = [{"kind": spec.kind, "name": spec.name, "distribution": spec.distribution, "version": spec.version,
             "description": spec.description} for spec in registry.all_components()]
    if as_json:
        click.echo(json.dumps({
            "components": rows,
            "plugins": [{"name": p.name, "module": p.module, "distribution": p.distribution,
                         "version": p.version, "hooks": list(p.hooks)} for p in registry.plugins],
            "failures": [{"name": f.name, "distribution": f.distribution, "version": f.version,
                          "error": f.error} for f in registry.failures],
        }, indent=2))
        return
    headers = ("kind", "name", "distribution", "version", "description")
    table = [headers] + [tuple(r[h] for h in headers) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(headers) - 1)]
    for row in table:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    for failure in registry.failures:
        click.echo(f"\nfailed to load plugin {failure.name!r} ({failure.distribution} {failure.version}): "
                   f"{failure.error}", err=True)


def _add_plugin_commands() -> None:
    try:
        from rrcore.registry import get_registry

        get_registry().hook.rr_cli_commands(group=main)
    except Exception as error:  # a broken plugin must not take the CLI down
        click.echo(f"rr: warning: plugin commands unavailable: {error}", err=True)


_add_plugin_commands()
