"""Time to accuracy: train experiments for a wall-clock budget, one after another on the same
machine, and write each one's curve of training minutes against held-out accuracy.

Each experiment runs as ``rr run`` in a process of its own (a clean compile state and GPU
memory), with ``train.time_budget_minutes`` and ``train.eval_at_minutes`` set: the training
clock (:mod:`rrcore.clock`) counts compilation and leaves evaluations out, and every
evaluation logs ``time/train_minutes`` beside its results in the run's ``metrics.jsonl``.
This module then reads those rows into ``time-to-accuracy-<name>.json`` and draws the
curves of all experiments of the call in one PNG.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rrcore.plots import read_metrics

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


def minutes_to_reach(points: list[dict[str, float]], metric: str, target: float) -> float | None:
    """The training minutes of the first evaluation at or above ``target`` (None: never)."""
    return next((p["minutes"] for p in points if p[metric] >= target), None)


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
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, points in curves.items():
        axes.plot([p["minutes"] for p in points], [p[metric] for p in points], "o-", label=name, markersize=4)
    axes.set_xlabel("training minutes (compilation included, evaluation not)")
    axes.set_ylabel(metric)
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


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
) -> dict[str, dict[str, Any]]:
    """Train each experiment for ``minutes`` (unless ``collect_only``: read the run folders
    a previous call left), then write each curve's JSON and the PNG of all of them.
    Returns the records by experiment name; raises ``RuntimeError`` naming a run that failed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict[str, Any]] = {}
    for experiment in experiments:
        name = Path(experiment).stem
        run_dir = runs_dir / name
        args = run_command(experiment, run_dir, minutes, marks, overrides)
        wall = None
        if not collect_only:
            started = time.perf_counter()
            print(f"rr: time-to-accuracy: {name} for {minutes:g} minutes in {run_dir}", file=sys.stderr, flush=True)
            code = subprocess.call([sys.executable, "-m", "rrcore", *args])
            wall = time.perf_counter() - started
            if code != 0:
                raise RuntimeError(f"rr run {experiment} failed with exit code {code} (its output is above)")
        points = read_curve(run_dir, metric)
        records[name] = {
            "experiment": experiment,
            "command": "rr " + " ".join(args),
            "metric": metric,
            "budget_minutes": minutes,
            "eval_at_minutes": marks,
            "wall_seconds_with_evaluation": wall,
            "machine": describe_machine(),
            "points": points,
        }
        write_curve(out_dir, name, records[name])
    curves = {name: record["points"] for name, record in records.items() if record["points"]}
    if curves:
        try:
            png = render_curves(curves, metric, f"time to accuracy on {describe_machine()['device']}")
        except ImportError:
            print("rr: matplotlib is not installed; no PNG written", file=sys.stderr)
        else:
            (out_dir / f"time-to-accuracy-{'-vs-'.join(curves)}.png").write_bytes(png)
    return records


def summary_lines(records: dict[str, dict[str, Any]], metric: str) -> list[str]:
    """One line per experiment: its accuracy at each evaluation, and its best."""
    lines = []
    for name, record in records.items():
        points = record["points"]
        shown = ", ".join(f"{p['minutes']:.2f} min {p[metric]:.4f}" for p in points) or "no evaluation"
        lines.append(f"{name}: {shown}")
    return lines
