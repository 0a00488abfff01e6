"""``rr run`` as a user meets it: run folders, interruptions, exit codes and input checks."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore.cli.main import main


def _rr(*args: str):
    return CliRunner().invoke(main, list(args))


def _latest(run_dir: Path) -> str:
    return (run_dir / "checkpoints" / "latest").read_text().strip()


def test_a_second_run_into_a_used_folder_is_refused_and_changes_nothing(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=2)
    assert _rr("run", str(path)).exit_code == 0
    run_dir = tmp_path / "runs" / "toy"
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}

    again = _rr("run", str(path), "--set", "train.lr=0.001")
    assert again.exit_code == 2
    line = again.output.strip()
    assert line.startswith(f"rr: error: {run_dir} already holds a run (checkpoints up to step_8)")
    assert "--resume latest" in line and "--run-dir" in line and "--overwrite" in line
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before


def test_overwrite_moves_the_old_run_aside_and_keeps_its_files(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=2)
    assert _rr("run", str(path)).exit_code == 0
    run_dir = tmp_path / "runs" / "toy"
    old_metrics = (run_dir / "metrics.jsonl").read_text()

    result = _rr("run", str(path), "--set", "train.epochs=1", "--overwrite")
    assert result.exit_code == 0, result.output
    aside = tmp_path / "runs" / "toy.old-1"
    assert f"moved the previous run in {run_dir} to {aside}" in result.output
    assert (aside / "metrics.jsonl").read_text() == old_metrics
    assert _latest(aside) == "step_8" and (aside / "checkpoints" / "step_8" / "state.pt").exists()
    assert _latest(run_dir) == "step_4"
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and max(steps) == 4  # only the new run's metrics

    assert _rr("run", str(path), "--overwrite").exit_code == 0
    assert (tmp_path / "runs" / "toy.old-2" / "checkpoints" / "step_4").exists()


def test_resume_in_a_used_folder_still_works(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    assert _rr("run", str(path)).exit_code == 0
    result = _rr("run", str(path), "--set", "train.epochs=2", "--resume", "latest")
    assert result.exit_code == 0, result.output
    assert _latest(tmp_path / "runs" / "toy") == "step_8"


def _env_with_rr_on_path(env: dict[str, str]) -> dict[str, str]:
    return {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])}


def test_sigterm_exits_143_and_the_printed_command_continues_this_run(toy_env, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=100)
    run_dir = tmp_path / "my runs" / "first"
    args = [
        sys.executable,
        "-m",
        "rrcore",
        "run",
        str(path),
        "--set",
        "train.max_steps=6",
        "--set",
        'run.name="two words"',
        "--run-dir",
        str(run_dir),
    ]
    first = subprocess.run(
        args, env={**toy_env, "RR_TOY_SIGNAL_AT": "3:TERM"}, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 143, first.stderr
    assert _latest(run_dir) == "step_3"
    command = first.stderr.split("continue with: ")[1].splitlines()[0]
    assert shlex.split(command) == [
        "rr",
        "run",
        str(path),
        "--set",
        "train.max_steps=6",
        "--set",
        'run.name="two words"',
        "--run-dir",
        str(run_dir),
        "--resume",
        "latest",
    ]
    assert f"exec {command}\n" in (run_dir / "resume.sh").read_text()

    second = subprocess.run(
        command, shell=True, env=_env_with_rr_on_path(toy_env), capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr
    assert _latest(run_dir) == "step_6"
    assert "rr: finished two words at step 6" in second.stderr
    assert not (tmp_path / "runs").exists()  # not the default run folder


def test_sigint_exits_130_after_saving(toy_env, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=100)
    result = subprocess.run(
        [sys.executable, "-m", "rrcore", "run", str(path)],
        capture_output=True,
        text=True,
        env={**toy_env, "RR_TOY_SIGNAL_AT": "2:INT"},
        timeout=120,
    )
    assert result.returncode == 130, result.stderr
    assert "interrupted by SIGINT at step 2" in result.stderr
    assert _latest(tmp_path / "runs" / "toy") == "step_2"


def test_run_help_documents_exit_codes_and_overwrite():
    text = _rr("run", "--help").output
    assert "--overwrite" in text and "resume.sh" in text
    for code in ("0 ", "1 ", "2 ", "130", "143"):
        assert f"  {code}" in text


def test_batch_larger_than_the_training_set_is_refused(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", global_batch_size=4096)
    result = _rr("run", str(path))
    assert result.exit_code == 2
    assert result.output.startswith(
        f"rr: error: {path}: train.global_batch_size = 4096 is larger than the training set (32 examples per epoch in "
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml")
    result = _rr("run", str(path), "--set", "run.device=cuda")
    assert result.exit_code == 2
    assert result.output.startswith(f'rr: error: {path}: run.device = "cuda" but torch ')
    assert result.output.count("\n") == 1 and 'use "auto" or "cpu"' in result.output


def test_resume_with_another_optimizer_or_model_says_what_differs(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    assert _rr("run", str(path)).exit_code == 0
    checkpoint = tmp_path / "runs" / "toy" / "checkpoints" / "step_4"

    optimizer = _rr("run", str(path), "--set", "optimizer.plugin=adam_atan2", "--resume", "latest")
    assert optimizer.exit_code == 2
    assert optimizer.output.startswith(
        f"rr: error: {checkpoint} was trained with optimizer 'adamw', this "
        f"experiment uses 'adam_atan2'; resume with the experiment"
    )

    model = _rr("run", str(path), "--set", "model.hidden_size=32", "--resume", "latest")
    assert model.exit_code == 2
    assert f"rr: error: {checkpoint} does not fit this model (model.hidden_size = 16 there, 32 here)" in model.output


def test_eval_output_folder_gets_each_evaluators_results(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    assert _rr("run", str(path)).exit_code == 0
    output = tmp_path / "scores"
    result = _rr("eval", str(tmp_path / "runs" / "toy"), "--output", str(output))
    assert result.exit_code == 0, result.output
    written = json.loads((output / "exact" / "results.json").read_text())
    printed = json.loads(result.output[result.output.index("{") :])
    assert written["count"] == 16 and printed["exact/accuracy"] == written["accuracy"]
