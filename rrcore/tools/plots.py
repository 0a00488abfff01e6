"""Training curves as PNG files in the run folder, redrawn at every evaluation.

A built-in plugin (:data:`rrcore.contracts.registry.DEFAULT_PLUGINS`): after each evaluation
and when training stops, rank 0 reads ``metrics.jsonl`` and writes
``plots/<curve>.png`` for each of :data:`CURVES` that has data. Drawing uses
matplotlib's object API (no pyplot state, no display). matplotlib is an optional
extra, ``pip install 'rrcore[plots]'``; without it training goes on and rr says
so once. A plot that fails to draw never stops a run.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from rrcore import hookimpl

PLOTS_DIR = "plots"
INSTALL_HINT = "pip install 'rrcore[plots]'"


@attrs.frozen
class Curve:
    """One plot: which logged metrics it draws (``selects(key)``) and how."""

    name: str
    title: str
    selects: Callable[[str], bool]
    log_scale: bool = False


def _evaluator_metric(key: str) -> str | None:
    """``metric`` of an evaluation key ``<evaluator>/<metric>`` (per-bucket keys excluded)."""
    parts = key.split("/")
    return parts[1] if len(parts) == 2 and parts[0] != "train" else None


def _is_exact(key: str) -> bool:
    metric = _evaluator_metric(key)
    return key == "train/exact_accuracy" or (metric is not None and "exact" in metric)


def _is_accuracy(key: str) -> bool:
    metric = _evaluator_metric(key)
    return key == "train/accuracy" or (
        metric is not None and "accuracy" in metric and "exact" not in metric and "q_" not in metric
    )


CURVES = (
    Curve(
        "loss",
        "Training loss (per example)",
        lambda k: k in ("train/loss", "train/lm_loss", "train/q_halt_loss", "train/q_continue_loss"),
        log_scale=True,
    ),
    Curve("accuracy", "Accuracy (train: halted rows; evaluation: test split)", _is_accuracy),
    Curve("exact_accuracy", "Exact accuracy (whole answer right)", _is_exact),
    Curve("act_steps", "Mean ACT steps at halting (train)", lambda k: k == "train/steps"),
    Curve("lr", "Learning rate", lambda k: k == "train/lr"),
)
"""The curves every run draws, in the order the report shows them."""

Series = dict[str, tuple[list[int], list[float]]]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl`` (empty when absent); a damaged last line is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line being written, or cut by a crash
                continue
    return rows


def series(rows: list[dict[str, Any]], curve: Curve) -> Series:
    """``{metric: (steps, values)}`` of the curve's metrics, one value per step (the last
    logged: a resumed run may log a step twice), finite values only."""
    by_key: dict[str, dict[int, float]] = {}
    for row in rows:
        step = row.get("step")
        for key, value in row.items():
            if key in ("step", "time") or not curve.selects(key) or not isinstance(value, (int, float)):
                continue
            if isinstance(step, int) and math.isfinite(value):
                by_key.setdefault(key, {})[step] = float(value)
    return {key: (sorted(points), [points[s] for s in sorted(points)]) for key, points in sorted(by_key.items())}


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def render_png(curve: Curve, data: Series, width: float = 6.0, height: float = 3.6) -> bytes:
    """The curve as PNG bytes (needs matplotlib)."""
    figure, axes = new_axes(width, height)
    for key, (steps, values) in data.items():
        style = "-" if key.startswith("train/") else "o-"
        axes.plot(steps, values, style, label=key, markersize=4, linewidth=1.5)
    if curve.log_scale and all(v > 0 for _, values in data.values() for v in values):
        axes.set_yscale("log")
    axes.set_title(curve.title, fontsize=10)
    axes.set_xlabel("step")
    return finish_png(figure, axes)


def new_figure(width: float, height: float) -> Any:
    """A figure of ``width`` x ``height`` inches drawn without a display (needs matplotlib)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def new_axes(width: float, height: float) -> tuple[Any, Any]:
    """A :func:`new_figure` with one set of axes."""
    figure = new_figure(width, height)
    return figure, figure.add_subplot()


def finish_png(figure: Any, axes: Any) -> bytes:
    """The figure as PNG bytes, with a grid and a legend on ``axes``."""
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def curve_images(run_dir: Path) -> dict[str, bytes]:
    """``{curve name: PNG bytes}`` for every curve with data in ``run_dir``'s metrics."""
    rows = read_metrics(run_dir)
    images = {}
    for curve in CURVES:
        data = series(rows, curve)
        if data:
            images[curve.name] = render_png(curve, data)
    return images


def write_plots(run_dir: Path) -> list[Path]:
    """Write ``plots/<curve>.png`` for each curve with data; returns the files written."""
    folder = Path(run_dir) / PLOTS_DIR
    written = []
    for name, png in curve_images(run_dir).items():
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}.png"
        tmp = path.with_name(f".{path.name}.tmp")  # a viewer never sees half a file
        tmp.write_bytes(png)
        tmp.replace(path)
        written.append(path)
    return written


_said: set[str] = set()


def _say_once(message: str) -> None:
    if message not in _said:
        _said.add(message)
        print(message, file=sys.stderr, flush=True)


def refresh(run_dir: Path) -> None:
    """Redraw the run's plots; without matplotlib (or on a drawing error) say so once."""
    if not have_matplotlib():
        _say_once(f"rr: no plots in {Path(run_dir) / PLOTS_DIR}: matplotlib is not installed ({INSTALL_HINT})")
        return
    try:
        write_plots(run_dir)
    except Exception as error:  # plots are a view of the run, never a reason to stop it
        _say_once(f"rr: warning: could not draw plots: {type(error).__name__}: {error}")


_drawer: concurrent.futures.ThreadPoolExecutor | None = None
_pending: concurrent.futures.Future | None = None


def refresh_in_background(run_dir: Path) -> None:
    """:func:`refresh` on a drawing thread, so training goes on meanwhile (drawing five
    curves takes about a second, importing matplotlib the first time a few more). A
    redraw asked for while one is still running waits its turn; none is dropped."""
    global _drawer, _pending
    if _drawer is None:
        _drawer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rr-plots")
    _pending = _drawer.submit(refresh, Path(run_dir))


def wait_for_drawing() -> None:
    """Block until the last background redraw has finished."""
    if _pending is not None:
        _pending.result()


@hookimpl
def rr_on_eval_end(context: Any, step: int, results: dict[str, Any]) -> None:
    """Redraw the curves once the evaluation is logged (rank 0), in the background."""
    if context.rank == 0:
        refresh_in_background(context.run_dir)


@hookimpl
def rr_on_train_end(context: Any, step: int) -> None:
    """Redraw with the last training metrics (rank 0) and wait: the run's files are
    complete when ``rr run`` returns."""
    if context.rank == 0:
        wait_for_drawing()
        refresh(context.run_dir)
