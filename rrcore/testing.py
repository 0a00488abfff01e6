"""Helpers for plugin test suites."""

from __future__ import annotations

from pathlib import Path

from rrcore.config import load_experiment
from rrcore.registry import Registry
from rrcore.trainer import TrainResult, train


def train_briefly(experiment: str | Path, tmp_path: Path, overrides: list[str] = (),
                  registry: Registry | None = None) -> TrainResult:
    """Train an experiment file with ``overrides`` into ``tmp_path`` (run folder and data
    cache both there) on CPU and return the result; ``result.eval_results`` holds the
    evaluators' final scores keyed ``"<evaluator>/<metric>"``."""
    settings = [f"run.out_dir={str(tmp_path / 'runs')!r}", f"run.cache_dir={str(tmp_path / 'cache')!r}",
                "run.device='cpu'", "train.compile='off'", *overrides]
    return train(load_experiment(experiment, settings, registry))
