"""Learning tests: train a real experiment for a few steps on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rrcore.contracts.registry import Registry

if TYPE_CHECKING:
    from rrcore.training.loop import TrainResult


def train_briefly(
    experiment: str | Path, tmp_path: Path, overrides: list[str] = (), registry: Registry | None = None
) -> TrainResult:
    """Train an experiment file with ``overrides`` into ``tmp_path`` (run folder and data
    cache both there) on CPU and return the result; ``result.eval_results`` holds the
    evaluators' final scores keyed ``"<evaluator>/<metric>"``."""
    # Here, not at the top: importing the kit for model and task checks loads no trainer.
    from rrcore.contracts.config import load_experiment
    from rrcore.training.loop import train

    settings = [
        f"run.out_dir={str(tmp_path / 'runs')!r}",
        f"run.cache_dir={str(tmp_path / 'cache')!r}",
        "run.device='cpu'",
        "train.compile='off'",
        *overrides,
    ]
    return train(load_experiment(experiment, settings, registry))
