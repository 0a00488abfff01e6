"""Time to accuracy: train experiments for a wall-clock budget, one after another on the same
machine, and write each one's curve of training minutes against held-out accuracy.

Each experiment runs as ``rr run`` in a process of its own (a clean compile state and GPU
memory), with ``train.time_budget_minutes`` and ``train.eval_at_minutes`` set: the training
clock (:mod:`rrcore.training.clock`) counts compilation and leaves evaluations out, and every
evaluation logs ``time/train_minutes`` beside its results in the run's ``metrics.jsonl``.
This module then reads those rows into ``time-to-accuracy-<name>.json`` and draws the
curves of all experiments of the call in one PNG.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rrcore.contracts.config import load_experiment
from rrcore.contracts.experiment import Experiment
from rrcore.tools.plots import finish_png, new_axes, read_metrics

MINUTES_KEY = "time/train_minutes"


def run_command(experiment: str, run_dir: Path, minutes: float, marks: list[float], overrides: list[str]) -> list[str]:
    """The ``rr run`` arguments that train ``experiment`` for ``minutes``, evaluating at ``marks``."""
    settings = [
        f"train.time_budget_minutes={minutes}",
        f"train.eval_at_minutes=[{', '.join(f'{m:g}' for m in marks)}]",
        "train.eval_interval=0",
    ]
    args = ["run", experiment, "--run-dir", str(run_dir), "--overwrite"]
    for setting in [*settings, *overrides]:
        args += ["--set", setting]
    return args


SET_UP_SECONDS = 30.0
"""Time a run spends before its first step (building the run, loading data), left out of the
steps :func:`fitted_settings` plans."""


def measure_step(experiment: str, overrides: list[str], out: Path) -> dict[str, Any]:
    """``rr bench`` of ``experiment`` in a process of its own, with a compile cache of its own so
    the timed run after it still compiles from nothing: its step time and first step."""
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["bench", experiment, "--steps", "10", "--warmup", "2", "--eval-batches", "0", "--json-out", str(out)]
    for setting in overrides:
        args += ["--set", setting]
    with tempfile.TemporaryDirectory(prefix="rr-fit-compile-") as compile_cache:
        _run_rr(args, env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": compile_cache})
    return json.loads(out.read_text())


def _run_rr(args: list[str], env: dict[str, str] | None = None) -> None:
    """``rr ARGS`` in a process of its own; a ``RuntimeError`` naming the command when it fails."""
    code = subprocess.call([sys.executable, "-m", "rrcore", *args], env=env)
    if code != 0:
        raise RuntimeError(f"rr {' '.join(args[:2])} failed with exit code {code} (its output is above)")


def fitted_settings(experiment: Experiment, minutes: float, step_ms: float, first_step_seconds: float) -> list[str]:
    """``--set`` strings that fit the experiment's schedule into ``minutes``: ``max_steps`` as
    many steps as the budget holds after set-up and the first step, and every other step count
    of the schedule (warmup, the EMA's start, the curriculum's phases) scaled by the same
    factor, so the run is the recipe compressed, not the recipe cut off."""
    train = experiment.train
    if not train.max_steps:
        raise ValueError(f"{experiment.source}: --fit-steps needs train.max_steps, the length the recipe plans for")
    steps = int((minutes * 60 - SET_UP_SECONDS - first_step_seconds) * 1000 / step_ms)
    if steps < 1:
        raise ValueError(f"{experiment.source}: {minutes:g} minutes hold no step after the first ({step_ms:g} ms each)")
    factor = steps / train.max_steps
    settings = [f"train.max_steps={steps}"]
    if train.lr_warmup_steps:
        settings.append(f"train.lr_warmup_steps={round(train.lr_warmup_steps * factor)}")
    if train.ema_start_step:
        settings.append(f"train.ema_start_step={round(train.ema_start_step * factor)}")
    for index, phase in enumerate(train.curriculum):
        settings.append(f"train.curriculum.{index}.until_step={max(1, round(phase.until_step * factor))}")
    return settings


def read_curve(run_dir: Path, metric: str) -> list[dict[str, float]]:
    """Every evaluation of the run in ``run_dir`` that logged its training minutes: the
    minutes, the step, ``metric`` and the run's other accuracies, in order."""
    points = []
    for row in read_metrics(run_dir):
        if MINUTES_KEY not in row or metric not in row:
            continue
        point = {"minutes": row[MINUTES_KEY], "step": row["step"], metric: row[metric]}
        point.update({k: v for k, v in row.items() if k.endswith("accuracy") and "/rating_" not in k})
        points.append(point)
    return points


def describe_machine() -> dict[str, Any]:
    """What the figures were measured on."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return {"device": device, "torch": torch.__version__, "python": platform.python_version()}


def write_curve(out_dir: Path, name: str, record: dict[str, Any]) -> Path:
    path = out_dir / f"time-to-accuracy-{name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def render_curves(curves: dict[str, list[dict[str, float]]], metric: str, title: str) -> bytes:
    """One PNG of every curve: training minutes against ``metric`` (needs matplotlib)."""
    figure, axes = new_axes(6.4, 4.0)
    for name, points in curves.items():
        axes.plot([p["minutes"] for p in points], [p[metric] for p in points], "o-", label=name, markersize=4)
    axes.set_xlabel("training minutes (compilation included, evaluation not)")
    axes.set_ylabel(metric)
    axes.set_title(title, fontsize=10)
    return finish_png(figure, axes)


def train_for_budget(name: str, args: list[str], minutes: float, run_dir: Path) -> float:
    """Run ``rr`` with ``args`` (:func:`run_command`'s) in a process of its own; returns its wall
    seconds, evaluations included. Raises ``RuntimeError`` when it fails."""
    started = time.perf_counter()
    print(f"rr: time-to-accuracy: {name} for {minutes:g} minutes in {run_dir}", file=sys.stderr, flush=True)
    _run_rr(args)
    return time.perf_counter() - started


def time_to_accuracy(
    experiments: list[str],
    *,
    minutes: float,
    marks: list[float],
    runs_dir: Path,
    out_dir: Path,
    metric: str,
    overrides: list[str],
    collect_only: bool = False,
    fit_steps: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train each experiment for ``minutes`` (unless ``collect_only``: read the run folders
    a previous call left), then write each curve's JSON and the PNG of all of them. With
    ``fit_steps``, first time a few steps of each (:func:`measure_step`) and compress its
    schedule into the budget (:func:`fitted_settings`).
    Returns the records by experiment name; raises ``RuntimeError`` naming a run that failed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, Any]] = {}
    for experiment in experiments:
        name = Path(experiment).stem
        run_dir = runs_dir / name
        settings, measured = list(overrides), None
        if fit_steps and not collect_only:
            measured = measure_step(experiment, overrides, runs_dir / f"{name}.bench.json")
            fitted = fitted_settings(
                load_experiment(experiment, overrides), minutes, measured["step_ms"], measured["first_step_seconds"]
            )
            settings += fitted
        args = run_command(experiment, run_dir, minutes, marks, settings)
        wall = None if collect_only else train_for_budget(name, args, minutes, run_dir)
        points = read_curve(run_dir, metric)
        records[name] = {
            "experiment": experiment,
            "command": "rr " + " ".join(args),
            "metric": metric,
            "budget_minutes": minutes,
            "eval_at_minutes": marks,
            "wall_seconds_with_evaluation": wall,
            "fitted_from_bench": (
                {k: measured.get(k) for k in ("step_ms", "first_step_seconds", "global_batch_size")}
                if measured
                else None
            ),
            "machine": describe_machine(),
            "points": points,
        }
        write_curve(out_dir, name, records[name])
    write_png(records, metric, out_dir)
    return records


def write_png(records: dict[str, dict[str, Any]], metric: str, out_dir: Path) -> None:
    """``out_dir/time-to-accuracy-<names>.png`` of every curve with points (none without matplotlib)."""
    curves = {name: record["points"] for name, record in records.items() if record["points"]}
    if not curves:
        return
    try:
        png = render_curves(curves, metric, f"time to accuracy on {describe_machine()['device']}")
    except ImportError:
        print("rr: matplotlib is not installed; no PNG written", file=sys.stderr)
        return
    (out_dir / f"time-to-accuracy-{'-vs-'.join(curves)}.png").write_bytes(png)


def summary_lines(records: dict[str, dict[str, Any]], metric: str) -> list[str]:
    """One line per experiment: its accuracy at each evaluation, and its best."""
    lines = []
    for name, record in records.items():
        points = record["points"]
        shown = ", ".join(f"{p['minutes']:.2f} min {p[metric]:.4f}" for p in points) or "no evaluation"
        lines.append(f"{name}: {shown}")
    return lines
