"""``rr eval``: a saved checkpoint or an export folder evaluated on its experiment's test split."""

from __future__ import annotations

from pathlib import Path

from rrcore.base import distributed
from rrcore.contracts.experiment import Experiment, RunConfig
from rrcore.contracts.registry import Registry
from rrcore.training.build import build_run
from rrcore.training.checkpoint import hold_checkpoint
from rrcore.training.evaluation import evaluate_run
from rrcore.training.weights import is_export


def default_eval_dir(source: Path) -> Path:
    """Where ``rr eval`` writes by default: ``eval/<checkpoint>-rr-eval`` in the run folder,
    or ``runs/<export folder>-rr-eval`` for an export (which may be shared or read-only)."""
    if is_export(source):
        return Path(RunConfig().out_dir) / f"{Path(source).resolve().name}-rr-eval"
    return Path(source).parent.parent / "eval" / f"{Path(source).name}-rr-eval"


def evaluate_checkpoint(
    experiment: Experiment,
    checkpoint: Path,
    output_dir: Path | None = None,
    registry: Registry | None = None,
    *,
    predictions: bool = False,
    trace: bool = False,
) -> dict[str, float] | None:
    """Evaluate a saved checkpoint or an export folder (the body of ``rr eval``); results on
    rank 0, else None. Builds no optimizers. ``predictions`` and ``trace``: see
    :func:`rrcore.training.evaluation.evaluate_run`."""
    checkpoint = Path(checkpoint)
    try:
        if is_export(checkpoint):
            run = build_run(experiment, registry, optimizers=False)
            run.start_from(checkpoint)
        else:
            with hold_checkpoint(str(checkpoint), checkpoint.parent.parent / "checkpoints") as path:
                run = build_run(experiment, registry, optimizers=False)
                run.restore(path)
        output_dir = output_dir or default_eval_dir(checkpoint)
        results = evaluate_run(run, output_dir, predictions=predictions, trace=trace)
        return results if run.layout.rank == 0 else None
    finally:
        distributed.teardown()
