"""Metric loggers are plugins: ``jsonl`` always, ``wandb`` (offline, for real) and ``tensorboard``."""

from __future__ import annotations

import builtins
import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from toy_helpers import toy_experiment

from rrcore.contracts.config import load_experiment
from rrcore.contracts.errors import ConfigError, TrainingError
from rrcore.training.loop import train


def _jsonl(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _by_step(rows: list[dict]) -> dict[int, dict[str, float]]:
    """Every logged metric at its step (training and evaluation rows of a step merged)."""
    merged: dict[int, dict[str, float]] = {}
    for row in rows:
        values = {k: v for k, v in row.items() if k not in ("step", "time") and not k.startswith("_")}
        merged.setdefault(row["step"], {}).update(values)
    return merged


def _train_with(tmp_path: Path, loggers: str) -> Path:
    path = toy_experiment(tmp_path / "exp.toml", epochs=1, extra=loggers)
    result = train(load_experiment(path))
    assert result.status == "finished"
    return result.run_dir


def test_jsonl_is_always_on_and_takes_no_options(toy_registry, tmp_path) -> None:
    pytest.importorskip("tensorboard")  # some other logger named, jsonl left out
    run_dir = _train_with(tmp_path, '[[loggers]]\nplugin = "tensorboard"\n')
    rows = _jsonl(run_dir)
    assert rows and "train/loss" in rows[0] and any("exact/exact_accuracy" in r for r in rows)
    path = toy_experiment(tmp_path / "other.toml", extra='[[loggers]]\nplugin = "jsonl"\nfilename = "x.jsonl"\n')
    with pytest.raises(ConfigError, match=r"loggers\.0\.filename: unknown key; plugin 'jsonl' takes no options"):
        load_experiment(path)


def test_tensorboard_event_files_hold_every_logged_metric(toy_registry, tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = _train_with(tmp_path, '[[loggers]]\nplugin = "tensorboard"\n')
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    expected = _by_step(_jsonl(run_dir))
    tags = events.Tags()["scalars"]
    assert "train/loss" in tags and "exact/exact_accuracy" in tags
    for tag in tags:
        logged = {e.step: e.value for e in events.Scalars(tag)}
        assert logged == pytest.approx({s: m[tag] for s, m in expected.items() if tag in m}, rel=1e-6), tag


def test_tensorboard_without_the_package_says_how_to_install_it(toy_registry, tmp_path, monkeypatch) -> None:
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    experiment = load_experiment(
        toy_experiment(tmp_path / "exp.toml", epochs=1, extra='[[loggers]]\nplugin = "tensorboard"\n')
    )
    with pytest.raises(TrainingError, match=r"logger plugin 'tensorboard' .*pip install 'rrcore\[tensorboard\]'"):
        train(experiment)


def test_wandb_mode_is_checked_at_load(toy_registry, tmp_path) -> None:
    path = toy_experiment(tmp_path / "exp.toml", extra='[[loggers]]\nplugin = "wandb"\nmode = "ofline"\n')
    with pytest.raises(ConfigError, match=r"loggers\.0\.mode.*'offline'"):
        load_experiment(path)


# -- wandb, offline, with the real package -------------------------------------------------

_BLOCK, _HEADER = 32768, 7  # the .wandb file: a LevelDB-style log of protobuf records


def _wandb_history(path: Path) -> list[dict]:
    """The ``history`` records (one per logged step) of an offline run's ``.wandb`` file."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    rows, pending, position = [], b"", _HEADER
    while position + _HEADER <= len(data):
        left = _BLOCK - position % _BLOCK
        length, kind = struct.unpack("<HB", data[position + 4 : position + 7])
        if left < _HEADER or (length, kind) == (0, 0):  # block trailer / padding
            position += left
            continue
        chunk = data[position + _HEADER : position + _HEADER + length]
        position += _HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk  # full/first, or middle/last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            if record.WhichOneof("record_type") == "history":
                row = {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item
                }
                rows.append({"step": row.pop("_step"), **row})
    return rows


def test_wandb_offline_run_folder_holds_the_metrics(toy_env, tmp_path) -> None:
    pytest.importorskip("wandb")
    path = toy_experiment(
        tmp_path / "exp.toml", epochs=1, extra='[[loggers]]\nplugin = "wandb"\nproject = "rr-test"\ngroup = "g"\n'
    )
    env = {**toy_env, "WANDB_SILENT": "true"}
    env.pop("WANDB_API_KEY", None)  # mode "" then means offline
    # A process of its own, as a user runs it: wandb's service completes the run's files
    # when the process ends, after finish() has returned.
    result = subprocess.run(
        [sys.executable, "-m", "rrcore", "run", str(path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "toy"
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, list((run_dir / "wandb").iterdir())
    logs = list(offline[0].glob("run-*.wandb"))
    assert len(logs) == 1
    logged = _by_step(_wandb_history(logs[0]))
    expected = _by_step(_jsonl(run_dir))
    assert logged.keys() == expected.keys() and len(expected) >= 2
    for step, metrics in expected.items():
        for key, value in metrics.items():
            assert math.isclose(logged[step][key], value, rel_tol=1e-9), (step, key)


def test_set_adds_a_logger_to_a_file_without_one(toy_registry, tmp_path) -> None:
    experiment = load_experiment(
        toy_experiment(tmp_path / "exp.toml"), ["loggers.0.plugin=tensorboard", "loggers.0.log_dir=tb"]
    )
    assert [(s.plugin, s.config.log_dir) for s in experiment.loggers] == [("tensorboard", "tb")]
    with pytest.raises(ConfigError, match=r"loggers has 0 entries; '1' is not an index"):
        load_experiment(toy_experiment(tmp_path / "exp.toml"), ["loggers.1.plugin=tensorboard"])
