"""Helpers for plugin test suites."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

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


def dataset_digest(folder: str | Path) -> str:
    """A SHA-256 over every file of a built data set (names and contents), to pin a builder's
    output in a test: it changes when any byte of an array or of ``dataset.json`` does.
    ``build.json`` (the cache key, which holds input paths) is left out, and ``.npz`` files
    count by their arrays (zip members carry the time they were written)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != "build.json"):
        if path.name == "arc_build_summary.json":  # holds the build's duration
            continue
        digest.update(path.relative_to(folder).as_posix().encode())
        if path.suffix == ".npz":
            with np.load(path) as arrays:
                for name in sorted(arrays.files):
                    array = arrays[name]
                    digest.update(f"{name} {array.dtype} {array.shape}".encode())
                    digest.update(np.ascontiguousarray(array).tobytes())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()
