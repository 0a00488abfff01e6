"""A built run evaluated: every evaluator over its test split, with the evaluation weights."""

from __future__ import annotations

from pathlib import Path

from rrcore.contracts.errors import TrainingError
from rrcore.evaluation.split import evaluate_split, task_for
from rrcore.training.run import Run


def evaluate_run(run: Run, output_dir: Path, *, predictions: bool = False, trace: bool = False) -> dict[str, float]:
    """Run every evaluator of ``run`` over its test split (EMA weights when enabled); each
    evaluator writes under ``output_dir / <its name>``.

    ``predictions`` (``rr eval``) also writes ``predictions.jsonl`` and ``steps.json``
    to ``output_dir`` (with each step's prediction when ``trace``); see
    :func:`rrcore.evaluation.split.evaluate_split`.
    """
    if run.eval_data is None:
        raise TrainingError(f"{run.data_dir}: no test split to evaluate")
    experiment = run.experiment
    with run.evaluation_weights():
        wants_task = predictions or experiment.eval.augmentations > 0
        task = task_for(run.registry, experiment.data, run.metadata) if wants_task else None
        return evaluate_split(
            run.loss_head,
            run.eval_data,
            run.evaluators,
            experiment.eval,
            halt_max_steps=experiment.act.halt_max_steps,
            q_continue=experiment.act.q_continue,
            step=run.step_fn,
            output_dir=output_dir,
            predictions=predictions,
            trace=trace,
            task=task,
            rank=run.layout.rank,
        )
