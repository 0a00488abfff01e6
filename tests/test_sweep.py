"""``rr sweep``: a grid of runs, one after another, with a table at the end."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore.cli.main import main
from rrcore.contracts.errors import ConfigError
from rrcore.tools.sweep import parse_axis, plan

ROOT = Path(__file__).resolve().parent.parent


def test_grid_values_split_outside_brackets_and_name_their_folders(tmp_path) -> None:
    assert parse_axis("train.betas=[0.9, 0.95],[0.8,0.9]").values == ["[0.9, 0.95]", "[0.8,0.9]"]
    assert parse_axis('run.name="a,b",c').values == ['"a,b"', "c"]
    axes = [parse_axis("train.lr=1e-4,3e-4"), parse_axis("model.H_cycles=2,3")]
    runs = plan(axes, ["train.max_steps=5"], tmp_path, "exp")
    assert [r.name for r in runs] == [
        "lr=1e-4,H_cycles=2",
        "lr=1e-4,H_cycles=3",
        "lr=3e-4,H_cycles=2",
        "lr=3e-4,H_cycles=3",
    ]
    assert runs[1].run_dir == tmp_path / "lr=1e-4,H_cycles=3"
    assert runs[1].overrides == [
        "train.max_steps=5",
        "train.lr=1e-4",
        "model.H_cycles=3",
        "run.name=exp-lr=1e-4,H_cycles=3",
    ]
    # Two keys ending alike keep their whole names; odd characters do not reach the folder name.
    clash = plan(
        [parse_axis("train.lr=1"), parse_axis("optimizer.lr=2"), parse_axis("data.path=a/b")], [], tmp_path, "exp"
    )
    assert clash[0].name == "train.lr=1,optimizer.lr=2,path=a_b"


@pytest.mark.parametrize(
    "text, message",
    [
        ("train.lr", "expected KEY=VALUE,VALUE"),
        ("train.lr=1,,2", "an empty value"),
        ("=1,2", "empty key"),
        ("train.lr=1,1", "repeated"),
    ],
)
def test_bad_grid_is_one_clear_error(text, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_axis(text)


def _sweep(*args: str):
    return CliRunner().invoke(main, ["sweep", *args])


def test_bad_grid_value_fails_before_any_run(toy_registry, tmp_path) -> None:
    path = toy_experiment(tmp_path / "exp.toml")
    result = _sweep(str(path), "--grid", "train.lr=1e-3,-1", "--sweep-dir", str(tmp_path / "sweep"))
    assert result.exit_code == 2
    assert result.output.strip() == (f"rr: error: {path}: train.lr = -1: must be in (0, 1e+06] (sweep run lr=-1)")
    assert not (tmp_path / "sweep").exists()
    result = _sweep(str(path), "--grid", "train.lrr=1e-3", "--print-commands")
    assert result.exit_code == 2 and "train.lrr: unknown key; did you mean 'lr'?" in result.output


def test_print_commands_runs_nothing(toy_registry, tmp_path) -> None:
    path = toy_experiment(tmp_path / "exp.toml")
    result = _sweep(
        str(path),
        "--grid",
        "train.lr=1e-3,3e-3",
        "--grid",
        "model.cycles=1,2",
        "--set",
        "train.epochs=1",
        "--print-commands",
    )
    lines = result.output.strip().splitlines()
    assert result.exit_code == 0 and len(lines) == 4
    sweep_dir = tmp_path / "runs" / "toy-sweep"  # run.out_dir / <run.name>-sweep
    assert shlex.split(lines[3]) == [
        "rr",
        "run",
        str(path),
        "--set",
        "train.epochs=1",
        "--set",
        "train.lr=3e-3",
        "--set",
        "model.cycles=2",
        "--set",
        "run.name=toy-lr=3e-3,cycles=2",
        "--run-dir",
        str(sweep_dir / "lr=3e-3,cycles=2"),
    ]
    assert not sweep_dir.exists()


def test_failed_run_is_reported_and_the_sweep_goes_on(toy_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", toy_env["PYTHONPATH"])  # the runs are child processes
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    sweep_dir = tmp_path / "sweep"
    # 4096 passes validation but is larger than the toy training set: that run fails (exit 2).
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rrcore",
            "sweep",
            str(path),
            "--grid",
            "train.global_batch_size=4096,8",
            "--set",
            "train.max_steps=3",
            "--sweep-dir",
            str(sweep_dir),
        ],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    record = json.loads((sweep_dir / "sweep.json").read_text())
    failed, finished = record["runs"]
    assert (failed["status"], failed["exit_code"]) == ("failed", 2)
    assert (finished["status"], finished["exit_code"], finished["steps"]) == ("finished", 0, 3)
    assert "exact/exact_accuracy" in finished["metrics"]
    table = result.stdout.splitlines()
    assert table[0].split() == [
        "train.global_batch_size",
        "status",
        "steps",
        "time",
        "exact/accuracy",
        "exact/exact_accuracy",
    ]
    assert table[1].split()[:4] == ["4096", "failed", "(exit", "2)"]
    assert table[2].split()[:3] == ["8", "finished", "3"]
    assert "| 8 | finished | 3 |" in (sweep_dir / "sweep.md").read_text()
    # The same sweep again would mix runs in those folders: refused before anything runs.
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "rrcore",
            "sweep",
            str(path),
            "--grid",
            "train.global_batch_size=4096,8",
            "--sweep-dir",
            str(sweep_dir),
        ],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 2 and "already holds a run" in again.stderr and "--overwrite" in again.stderr


def test_ctrl_c_stops_the_sweep_after_the_run_saves(toy_env, tmp_path) -> None:
    path = toy_experiment(tmp_path / "exp.toml", epochs=100)
    sweep_dir = tmp_path / "sweep"
    env = {**toy_env, "RR_TOY_STEP_SECONDS": "0.3"}
    sweep = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rrcore",
            "sweep",
            str(path),
            "--grid",
            "train.lr=1e-3,3e-3",
            "--sweep-dir",
            str(sweep_dir),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = sweep_dir / "lr=1e-3" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    sweep.send_signal(signal.SIGINT)  # the sweep alone, as a terminal's Ctrl-C reaches it
    stdout, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, stderr
    assert "interrupted by SIGINT" in stderr and "--resume latest" in stderr  # the run's own hint
    assert "sweep stopped by SIGINT; 1 of 2 runs not started" in stderr
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert [r["status"] for r in record["runs"]] == ["interrupted", "not run"]
    assert (sweep_dir / "lr=1e-3" / "checkpoints" / "latest").exists()
    assert not (sweep_dir / "lr=3e-3").exists()
    assert "interrupted (exit 130)" in stdout


@pytest.mark.slow
def test_two_by_two_sweep_on_the_4x4_demo(tmp_path, monkeypatch) -> None:
    pytest.importorskip("rr_sudoku")
    pytest.importorskip("rr_trm")
    monkeypatch.delenv("RR_LOAD_PLUGINS", raising=False)
    monkeypatch.setenv("RR_CACHE_DIR", str(tmp_path / "cache"))
    sweep_dir = tmp_path / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rrcore",
            "sweep",
            "examples/sudoku4x4-trm.toml",
            "--grid",
            "train.lr=1e-3,3e-3",
            "--grid",
            "model.H_cycles=1,2",
            "--set",
            "train.max_steps=4",
            "--set",
            "data.train_size=200",
            "--set",
            "data.test_size=20",
            "--set",
            "run.cpu_threads=1",
            "--sweep-dir",
            str(sweep_dir),
        ],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header.split()[:5] == ["train.lr", "model.H_cycles", "status", "steps", "time"]
    assert "sudoku/exact_accuracy" in header.split()
    assert [row.split()[:4] for row in rows] == [
        [lr, h, "finished", "4"] for lr in ("1e-3", "3e-3") for h in ("1", "2")
    ]
    record = json.loads((sweep_dir / "sweep.json").read_text())
    for run in record["runs"]:
        config = (Path(run["run_dir"]) / "config.toml").read_text()
        assert f"H_cycles = {run['values']['model.H_cycles']}\n" in config
        assert 0.0 <= run["metrics"]["sudoku/exact_accuracy"] <= 1.0
