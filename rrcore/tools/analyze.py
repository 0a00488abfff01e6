"""``rr analyze``: the dynamics of a run's recurrent states on test puzzles.

For each named state the model records (:class:`rrcore.contracts.protocols.RecordsStates`;
HRM ``z_H``/``z_L``, TRM ``z_H`` = y / ``z_L`` = z, URM ``hidden``):

forward residuals
    ``||z_t - z_{t-1}||`` between consecutive recorded updates (the whole state of
    one example, all positions and channels), averaged over the puzzles. Updates
    run on across ACT steps: the first of a step is compared with the last of the
    step before. A state that settles within a cycle shows residuals falling
    towards 0; one that restarts shows them jump back up.
participation ratio
    ``PR = (sum lambda)^2 / sum lambda^2``, lambda the eigenvalues of the covariance
    of the state vectors (each puzzle's state after each update, flattened): the
    effective number of dimensions its trajectories use. The HRM paper reports
    PR_H / PR_L near 3 for a trained Sudoku model (z_H spans more dimensions than
    z_L) and about 1 for an untrained one.

and the decoded answer's accuracy after each ACT step. Results go to
``analysis.json`` beside PNG plots so runs can be compared.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rrcore.tools import plots

if TYPE_CHECKING:
    from rrcore.tools.stepwise import StepTrace


def forward_residuals(trajectory: np.ndarray) -> np.ndarray:
    """(U - 1,) mean over examples of ``||z_t - z_{t-1}||`` for a trajectory (N, U, ...)."""
    trajectory = np.asarray(trajectory, dtype=np.float64)
    flat = trajectory.reshape(trajectory.shape[0], trajectory.shape[1], -1)
    return np.linalg.norm(np.diff(flat, axis=1), axis=-1).mean(axis=0)


def covariance_eigenvalues(samples: np.ndarray) -> np.ndarray:
    """Eigenvalues (descending) of the sample covariance of ``samples`` (n, d), n >= 2.

    From the singular values of the centred samples (lambda = s^2 / (n - 1)), so a
    state of many dimensions with fewer samples costs an (n, d) SVD, not (d, d).
    """
    samples = np.asarray(samples, dtype=np.float64)
    centred = samples - samples.mean(axis=0, keepdims=True)
    singular = np.linalg.svd(centred, compute_uv=False)
    return singular**2 / max(samples.shape[0] - 1, 1)


def participation_ratio(eigenvalues: np.ndarray) -> float:
    """``(sum lambda)^2 / sum lambda^2``: 1 when one direction holds all variance, d when
    d directions hold equal shares; 0 for no variance at all."""
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    squares = float((eigenvalues**2).sum())
    return float(eigenvalues.sum() ** 2 / squares) if squares > 0 else 0.0


def state_pairs(names: list[str]) -> list[tuple[str, str]]:
    """(high, low) pairs among state names: ``z_H`` with ``z_L`` (any common suffix)."""
    return [(name, "z_L" + name[3:]) for name in names if name.startswith("z_H") and "z_L" + name[3:] in names]


def analyse(trace: StepTrace) -> dict[str, Any]:
    """The analysis of a trace recorded with states (see the module doc), as plain JSON values."""
    correct = trace.correct()
    states = {}
    for name, trajectory in trace.states.items():
        samples = trajectory.reshape(trajectory.shape[0] * trajectory.shape[1], -1)
        eigenvalues = covariance_eigenvalues(samples)
        states[name] = {
            "updates_per_step": trace.updates_per_step[name],
            "forward_residuals": forward_residuals(trajectory).tolist(),
            "participation_ratio": participation_ratio(eigenvalues),
            "samples": int(samples.shape[0]),
            "dimensions": int(samples.shape[1]),
            "top_eigenvalues": eigenvalues[:10].tolist(),
        }
    ratios = {
        f"{high}/{low}": _ratio(states[high]["participation_ratio"], states[low]["participation_ratio"])
        for high, low in state_pairs(list(states))
    }
    return {
        "puzzles": trace.count,
        "act_steps": trace.steps,
        "exact_accuracy_per_step": correct.mean(axis=1).tolist(),
        "token_accuracy_per_step": trace.token_accuracy().tolist(),
        "mean_q_halt_per_step": trace.q_halt.mean(axis=1).tolist(),
        "states": states,
        "participation_ratio_ratios": ratios,
    }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def summary(result: dict[str, Any]) -> str:
    """The analysis in a few lines of text (what ``rr analyze`` prints)."""
    lines = [f"{result['source']}: {result['puzzles']} test puzzles, {result['act_steps']} ACT steps"]
    lines.append("exact accuracy per ACT step: " + " ".join(f"{v:.3f}" for v in result["exact_accuracy_per_step"]))
    lines.append("token accuracy per ACT step: " + " ".join(f"{v:.3f}" for v in result["token_accuracy_per_step"]))
    for name, state in result["states"].items():
        per_step = state["updates_per_step"]
        residuals = state["forward_residuals"]
        # One group per ACT step; the first group starts at the step's second update.
        groups, start = [], 0
        for step in range(result["act_steps"]):
            size = per_step - 1 if step == 0 else per_step
            groups.append(" ".join(f"{v:.3g}" for v in residuals[start : start + size]))
            start += size
        lines.append(
            f"{name}: PR {state['participation_ratio']:.2f} ({state['samples']} states of "
            f"{state['dimensions']} dims); forward residuals per update, by ACT step: " + " | ".join(groups)
        )
    for pair, value in result["participation_ratio_ratios"].items():
        high, low = pair.split("/")
        shown = f"{value:.2f}" if value is not None else "undefined (no variance in the low state)"
        lines.append(f"PR_{high[2:]} / PR_{low[2:]} = {shown}")
    return "\n".join(lines)


def write_plots(result: dict[str, Any], folder: Path) -> list[Path]:
    """``residuals.png``, ``participation_ratio.png`` and ``accuracy_per_step.png`` (needs matplotlib)."""
    written = []

    def save(figure: Any, name: str) -> None:
        figure.tight_layout()
        path = folder / name
        figure.savefig(path)
        written.append(path)

    states = result["states"]
    if states:
        figure = plots.new_figure(7, 2.6 * len(states))
        for row, (name, state) in enumerate(states.items(), start=1):
            axes = figure.add_subplot(len(states), 1, row)
            residuals = state["forward_residuals"]
            updates = np.arange(2, len(residuals) + 2)  # residual t compares update t with t - 1
            axes.plot(updates, residuals, "o-", markersize=3)
            for boundary in range(state["updates_per_step"], len(residuals) + 1, state["updates_per_step"]):
                axes.axvline(boundary + 0.5, color="grey", linestyle=":", linewidth=1)
            if all(v > 0 for v in residuals):
                axes.set_yscale("log")
            axes.set_ylabel(f"||{name}_t - {name}_t-1||", fontsize=8)
            axes.set_title(f"{name}: forward residual per update (dotted: ACT step boundaries)", fontsize=9)
            axes.grid(True, alpha=0.3)
        axes.set_xlabel("update")
        save(figure, "residuals.png")

        figure, axes = plots.new_axes(4 + 0.4 * len(states), 3.2)
        names = list(states)
        axes.bar(names, [states[n]["participation_ratio"] for n in names], color="#4c72b0")
        for i, name in enumerate(names):
            axes.text(
                i,
                states[name]["participation_ratio"],
                f"{states[name]['participation_ratio']:.2f}",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        axes.set_ylabel("participation ratio")
        axes.set_title(f"Participation ratio ({result['source']})", fontsize=9)
        save(figure, "participation_ratio.png")

    written.append(_write_accuracy(result, folder / "accuracy_per_step.png"))
    return written


def _write_accuracy(result: dict[str, Any], path: Path) -> Path:
    """Exact and token accuracy of the decoded answer at each ACT step."""
    figure, axes = plots.new_axes(5, 3.2)
    steps = np.arange(1, result["act_steps"] + 1)
    axes.plot(steps, result["exact_accuracy_per_step"], "o-", label="exact")
    axes.plot(steps, result["token_accuracy_per_step"], "s-", label="token")
    axes.set_xlabel("ACT step")
    axes.set_ylabel("accuracy of the decoded answer")
    axes.set_ylim(-0.02, 1.02)
    axes.set_xticks(steps)
    path.write_bytes(plots.finish_png(figure, axes))
    return path


def write_results(result: dict[str, Any], folder: Path) -> Path:
    """``analysis.json`` in ``folder`` (non-finite numbers as null)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "analysis.json"

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.write_text(json.dumps(clean(result), indent=2) + "\n")
    return path
