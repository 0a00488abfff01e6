"""``rr eval``: a saved checkpoint or an export folder evaluated on its experiment's test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rrcore.base import distributed
from rrcore.contracts.config import load_experiment
from rrcore.contracts.experiment import Experiment, RunConfig
from rrcore.contracts.registry import Registry
from rrcore.training.build import build_run
from rrcore.training.evaluation import evaluate_run
from rrcore.training.weights import hold_source, is_export


def default_eval_dir(source: Path) -> Path:
    """Where ``rr eval`` writes by default: ``eval/<checkpoint>-rr-eval`` in the run folder,
    or ``runs/<export folder>-rr-eval`` for an export (which may be shared or read-only)."""
    if is_export(source):
        return Path(RunConfig().out_dir) / f"{Path(source).resolve().name}-rr-eval"
    return Path(source).parent.parent / "eval" / f"{Path(source).name}-rr-eval"


def evaluate_source(
    path: str | Path,
    overrides: Sequence[str] = (),
    output_dir: str | Path | None = None,
    *,
    predictions: bool = False,
    trace: bool = False,
) -> tuple[dict[str, float] | None, Path]:
    """The body of ``rr eval``: evaluate a run, checkpoint or export folder with the experiment
    it was saved with (``overrides`` applied), the checkpoint kept from rotation meanwhile.
    Returns the results (None on ranks other than 0) and the folder the outputs went to."""
    with hold_source(path) as source:  # a run saving meanwhile rotates other checkpoints
        experiment = load_experiment(source / "config.toml", list(overrides))
        output = Path(output_dir) if output_dir is not None else default_eval_dir(source)
        return evaluate_checkpoint(experiment, source, output, predictions=predictions, trace=trace), output


def evaluate_checkpoint(
    experiment: Experiment,
    checkpoint: Path,
    output_dir: Path | None = None,
    registry: Registry | None = None,
    *,
    predictions: bool = False,
    trace: bool = False,
) -> dict[str, float] | None:
    """Evaluate a checkpoint folder (``RUN/checkpoints/step_N``, which the caller keeps from
    rotation, see :func:`evaluate_source`) or an export folder; results on rank 0, else None.
    Builds no optimizers. ``predictions`` and ``trace``: see
    :func:`rrcore.training.evaluation.evaluate_run`."""
    checkpoint = Path(checkpoint)
    try:
        run = build_run(experiment, registry, optimizers=False)
        if is_export(checkpoint):
            run.start_from(checkpoint)
        else:
            run.restore(checkpoint)
        output_dir = output_dir or default_eval_dir(checkpoint)
        results = evaluate_run(run, output_dir, predictions=predictions, trace=trace)
        return results if run.layout.rank == 0 else None
    finally:
        distributed.teardown()
