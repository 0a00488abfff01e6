"""``rr sweep``: train every point of a grid of settings, one run after another.

Each grid point is an ordinary ``rr run`` of the same experiment with a few more ``--set``
overrides, in a run folder of its own named from its values (``lr=3e-4,H_cycles=2``)
inside the sweep folder. Each run is a child process: a failed run cannot take the sweep
down with it, and the command that ran is exactly the one ``--print-commands`` shows for
a scheduler. After every run the sweep writes ``sweep.json`` and ``sweep.md`` (the table
of values, status, steps, time and final evaluation metrics), so an interrupted sweep
still leaves its table.

A sweep holds at most :data:`MAX_RUNS` runs, each validated before the first starts; a
larger grid is refused with its count, or (``--print-commands``) streamed, each value
validated once.

Signals: SIGINT (Ctrl-C) or SIGTERM stops the sweep. The run in progress gets the signal
once (it runs in a process group of its own, so a terminal's Ctrl-C is not delivered
twice), saves a checkpoint and prints its own resume command; the sweep then stops
without starting the next run.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from rrcore.contracts.config import load_experiment, parse_override
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.experiment import Experiment
from rrcore.contracts.registry import Registry
from rrcore.tools.plots import read_metrics
from rrcore.training.rundir import previous_run

EXIT_SIGNAL = 128
MAX_RUNS = 10_000
"""The most runs one sweep holds: each is validated before the first starts and kept in
sweep.json. A larger grid is refused with its count; ``--print-commands`` streams it."""


@attrs.define
class Axis:
    """One ``--grid KEY=V1,V2`` option: the key and each value as written."""

    key: str
    values: list[str]


@attrs.define
class SweepRun:
    """One grid point: its values, where it runs, and (once run) how it ended."""

    name: str
    values: dict[str, str]
    overrides: list[str]
    run_dir: Path
    status: str = "not run"  # finished | failed | interrupted | not run
    exit_code: int | None = None
    steps: int | None = None
    seconds: float | None = None
    metrics: dict[str, float] = attrs.field(factory=dict)


def _split_values(text: str) -> list[str]:
    """``1e-4,3e-4`` or ``[1,2],[3,4]`` → the values, split at commas outside brackets and quotes."""
    values, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def parse_axis(text: str) -> Axis:
    """``"train.lr=1e-4,3e-4"`` → :class:`Axis`; values are TOML, as ``--set`` takes them."""
    example = "e.g. --grid train.lr=1e-4,3e-4"
    if "=" not in text:
        raise ConfigError(f"--grid {text!r}: expected KEY=VALUE,VALUE..., {example}")
    key, raw = (part.strip() for part in text.split("=", 1))
    values = _split_values(raw)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--grid {text!r}: empty key, {example}")
    if any(not value for value in values):
        raise ConfigError(f"--grid {text!r}: an empty value; separate values by single commas, {example}")
    if len(set(values)) != len(values):
        raise ConfigError(f"--grid {text!r}: a value is repeated")
    for value in values:
        parse_override(f"{key}={value}")
    return Axis(key, values)


def _short_keys(axes: list[Axis]) -> list[str]:
    """The last part of each key (``lr`` for ``train.lr``), the whole key where two would clash."""
    last = [axis.key.rsplit(".", 1)[-1] for axis in axes]
    return [short if last.count(short) == 1 else axis.key for short, axis in zip(last, axes)]


def _folder_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", text).strip("_") or "_"


def _tokens(axis: Axis) -> list[str]:
    """Each value of ``axis`` as folder names show it, unique within the axis (values that
    differ only in characters a folder name drops get -2, -3, ...), so every grid point's
    name is unique without remembering the names already given."""
    tokens: list[str] = []
    for value in axis.values:
        token = base = _folder_safe(value)
        n = 2
        while token in tokens:
            token, n = f"{base}-{n}", n + 1
        tokens.append(token)
    return tokens


def iter_plan(axes: list[Axis], settings: list[str], sweep_dir: Path, run_name: str) -> Iterator[SweepRun]:
    """Every grid point (the first axis varies slowest) as a :class:`SweepRun`, one at a
    time: ``--print-commands`` streams a grid too large to hold."""
    if len({axis.key for axis in axes}) != len(axes):
        raise ConfigError("--grid: a key is given twice; put all its values in one --grid KEY=V1,V2")
    short = _short_keys(axes)
    columns = [list(zip(axis.values, _tokens(axis))) for axis in axes]
    for point in itertools.product(*columns):
        name = ",".join(f"{key}={token}" for key, (_, token) in zip(short, point))
        values = {axis.key: value for axis, (value, _) in zip(axes, point)}
        overrides = [*settings, *(f"{key}={value}" for key, value in values.items()), f"run.name={run_name}-{name}"]
        yield SweepRun(name, values, overrides, sweep_dir / name)


def plan(axes: list[Axis], settings: list[str], sweep_dir: Path, run_name: str) -> list[SweepRun]:
    """Every grid point (the first axis varies slowest) as a :class:`SweepRun`."""
    return list(iter_plan(axes, settings, sweep_dir, run_name))


def grid_size(axes: list[Axis]) -> int:
    """How many runs the grid holds."""
    return math.prod(len(axis.values) for axis in axes)


def grid_shape(axes: list[Axis]) -> str:
    """``"2000 x 2000"``: the values of each axis."""
    return " x ".join(str(len(axis.values)) for axis in axes)


def check_size(axes: list[Axis], streaming: bool) -> int:
    """The grid's number of runs; above :data:`MAX_RUNS` a :class:`ConfigError` saying how
    to go on, unless ``streaming`` (``--print-commands``, which holds one run at a time)."""
    runs = grid_size(axes)
    if runs > MAX_RUNS and not streaming:
        raise ConfigError(
            f"--grid: {runs:,} runs ({grid_shape(axes)}); one sweep runs at most {MAX_RUNS:,}: split the "
            f"grid into several sweeps, or add --print-commands to hand the commands to a scheduler"
        )
    return runs


def edge_runs(axes: list[Axis], settings: list[str], sweep_dir: Path, run_name: str) -> Iterator[SweepRun]:
    """One grid point per value of each axis, the other axes at their first value: what
    :func:`check` validates when the whole grid is too large to (beyond :data:`MAX_RUNS`,
    ``--print-commands`` only) - every value once, not every combination."""
    for i in range(len(axes)):
        reduced = [axis if j == i else Axis(axis.key, axis.values[:1]) for j, axis in enumerate(axes)]
        yield from iter_plan(reduced, settings, sweep_dir, run_name)


def check(experiment_path: str, runs: Iterable[SweepRun], registry: Registry | None = None) -> None:
    """Validate every grid point before the first run starts: a mistake is found in
    seconds, not after the first runs' hours."""
    for run in runs:
        try:
            load_experiment(experiment_path, run.overrides, registry)
        except ConfigError as error:
            raise ConfigError(f"{error} (sweep run {run.name})") from None


def check_unused(runs: list[SweepRun]) -> None:
    """Refuse run folders that hold runs (before any run starts, not at the third run)."""
    for run in runs:
        found = previous_run(run.run_dir)
        if found is not None:
            raise ConfigError(
                f"{run.run_dir} already holds a run ({found}); choose another --sweep-dir, or "
                f"add --overwrite to move each old run aside (nothing is deleted)"
            )


def run_command(experiment_path: str, run: SweepRun, overwrite: bool = False) -> list[str]:
    """The ``rr run`` arguments (after ``rr``) of one grid point."""
    words = ["run", experiment_path]
    for override in run.overrides:
        words += ["--set", override]
    words += ["--run-dir", str(run.run_dir)]
    return words + ["--overwrite"] * overwrite


def read_outcome(run: SweepRun) -> None:
    """The last step and the last evaluation's metrics, from the run's ``metrics.jsonl``."""
    for row in read_metrics(run.run_dir):
        run.steps = row.get("step", run.steps)
        values = {k: v for k, v in row.items() if k not in ("step", "time")}
        if values and not all(k.startswith("train/") for k in values):
            run.metrics = values


def _default_columns(runs: list[SweepRun]) -> list[str]:
    """Each evaluator's overall metrics (``sudoku/exact_accuracy``), not per-bucket, counts or the
    evaluation engine's own figures (``eval/...``)."""
    keys: dict[str, None] = {}
    for run in runs:
        for key in run.metrics:
            if key.count("/") <= 1 and not key.endswith("/count") and not key.startswith(("time/", "eval/")):
                keys[key] = None
    return list(keys)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def table_rows(axes: list[Axis], runs: list[SweepRun], metrics: list[str] | None = None) -> list[list[str]]:
    """Header and one row per run: values, status, steps, time and the chosen metrics."""
    columns = metrics or _default_columns(runs)
    header = [axis.key for axis in axes] + ["status", "steps", "time"] + columns
    rows = [header]
    for run in runs:
        status = run.status if run.exit_code in (0, None) else f"{run.status} (exit {run.exit_code})"
        seconds = f"{run.seconds:.1f}s" if run.seconds is not None else "-"
        rows.append(
            [run.values[axis.key] for axis in axes]
            + [status, _cell(run.steps), seconds]
            + [_cell(run.metrics.get(key)) for key in columns]
        )
    return rows


def format_table(rows: list[list[str]]) -> str:
    """Plain text, columns aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def format_markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])


def write_summary(
    sweep_dir: Path,
    experiment_path: str,
    axes: list[Axis],
    settings: list[str],
    runs: list[SweepRun],
    metrics: list[str] | None,
) -> None:
    """``sweep.json`` (everything, every metric) and ``sweep.md`` (the table) in the sweep folder."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "experiment": experiment_path,
        "settings": settings,
        "grid": {axis.key: axis.values for axis in axes},
        "runs": [
            {
                "name": run.name,
                "run_dir": str(run.run_dir),
                "values": run.values,
                "command": shlex.join(["rr", *run_command(experiment_path, run)]),
                "status": run.status,
                "exit_code": run.exit_code,
                "steps": run.steps,
                "seconds": run.seconds,
                "metrics": run.metrics,
            }
            for run in runs
        ],
    }
    (sweep_dir / "sweep.json").write_text(json.dumps(record, indent=2) + "\n")
    (sweep_dir / "sweep.md").write_text(
        f"# Sweep of {experiment_path}\n\n" + format_markdown(table_rows(axes, runs, metrics)) + "\n"
    )


class _Forwarder:
    """Stops the sweep on SIGINT/SIGTERM and hands the signal, once, to the run in progress."""

    def __init__(self) -> None:
        self.child: subprocess.Popen | None = None
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Forwarder:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)


def _own_process_group() -> dict[str, Any]:
    # The child gets a terminal's Ctrl-C through the sweep only, never twice.
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"preexec_fn": os.setpgrp}  # pragma: no cover - Python 3.10


def run_sweep(
    experiment_path: str,
    axes: list[Axis],
    settings: list[str],
    runs: list[SweepRun],
    sweep_dir: Path,
    metrics: list[str] | None = None,
    overwrite: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """Run each grid point in turn; return the sweep's exit code (0 all finished, 1 some
    failed, 128 + N when signal N stopped it). The table goes to ``sweep.json``/``sweep.md``
    after every run."""
    with _Forwarder() as forwarder:
        for number, run in enumerate(runs, start=1):
            if forwarder.signal is not None:
                break
            say(f"rr: sweep run {number}/{len(runs)}: {run.name} in {run.run_dir}")
            command = [sys.executable, "-m", "rrcore", *run_command(experiment_path, run, overwrite)]
            started = time.perf_counter()
            forwarder.child = subprocess.Popen(command, **_own_process_group())
            if forwarder.signal is not None:  # it came while the child was being started
                forwarder.child.send_signal(forwarder.signal)
            code = forwarder.child.wait()
            forwarder.child = None
            run.seconds = time.perf_counter() - started
            run.exit_code = code
            interrupted = code in (EXIT_SIGNAL + signal.SIGINT, EXIT_SIGNAL + signal.SIGTERM)
            run.status = "finished" if code == 0 else "interrupted" if interrupted else "failed"
            if interrupted and forwarder.signal is None:
                forwarder.signal = code - EXIT_SIGNAL
            read_outcome(run)
            write_summary(sweep_dir, experiment_path, axes, settings, runs, metrics)
    write_summary(sweep_dir, experiment_path, axes, settings, runs, metrics)
    if forwarder.signal is not None:
        left = [run for run in runs if run.status == "not run"]
        name = signal.Signals(forwarder.signal).name
        say(
            f"rr: sweep stopped by {name}; {len(left)} of {len(runs)} runs not started"
            + (
                "; their commands:\n" + "\n".join(shlex.join(["rr", *run_command(experiment_path, r)]) for r in left)
                if left
                else ""
            )
        )
        return EXIT_SIGNAL + forwarder.signal
    return 1 if any(run.status != "finished" for run in runs) else 0


def sweep_folder(experiment: Experiment) -> Path:
    """``run.out_dir/<run.name>-sweep``: the sweep folder when ``--sweep-dir`` is not given."""
    return Path(experiment.run.out_dir) / f"{experiment.run.name}-sweep"
