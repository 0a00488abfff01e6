"""The trainer end to end on the toy plugin: run folder, resume, signals, crashes, DDP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore import hookimpl
from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.contracts.errors import CheckpointError, TrainingError
from rrcore.training import checkpoint as checkpoint_module
from rrcore.training.checkpoint import load_checkpoint
from rrcore.training.loop import Trainer, train

# 64 training puzzles in 32 groups, one puzzle per group per epoch, batch 8: 4 steps per epoch.


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    shared, _, _ = load_checkpoint(run_dir / "checkpoints" / latest)
    return shared["model"]


def _stop_at(step: int) -> types.ModuleType:
    """A plugin that sends this process SIGTERM after ``step``."""
    plugin = types.ModuleType(f"stopper_{step}")

    @hookimpl
    def rr_on_step_end(context, step: int, metrics) -> None:  # noqa: ARG001
        if step == plugin.at:
            os.kill(os.getpid(), signal.SIGTERM)

    plugin.rr_on_step_end = rr_on_step_end
    plugin.at = step
    return plugin


def test_run_writes_config_metrics_checkpoint_and_summary(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=2, eval_interval=1)
    result = CliRunner().invoke(main, ["run", str(path), "--set", "train.lr=0.004"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "toy"
    assert "lr = 0.004" in (run_dir / "config.toml").read_text()
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "train/loss" in line] == [2, 4, 6, 8]
    assert any("exact/exact_accuracy" in line for line in lines)  # evaluation after epoch 1
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_8"
    assert "rr: finished toy at step 8" in result.output


def test_toy_task_learns(toy_registry, tmp_path):
    experiment = load_experiment(toy_experiment(tmp_path / "exp.toml", epochs=30))
    result = train(experiment)
    assert result.eval_results["exact/accuracy"] > 0.9  # 16 held-out sequences


def test_resume_is_bit_exact_and_sigterm_saves(toy_registry, tmp_path):
    settings = dict(epochs=6, lr_min_ratio=0.1, ema="true", log_interval=1)
    straight = load_experiment(toy_experiment(tmp_path / "a.toml", **settings))
    train(straight, run_dir=tmp_path / "straight")

    interrupted = load_experiment(toy_experiment(tmp_path / "b.toml", **settings))
    toy_registry.register_module(_stop_at(10), name="stopper", distribution="test", version="0")
    first = train(interrupted, run_dir=tmp_path / "resumed")
    toy_registry.plugin_manager.unregister(name="stopper")
    assert first.status == "interrupted" and first.step == 10
    assert (tmp_path / "resumed" / "checkpoints" / "latest").read_text().strip() == "step_10"

    second = train(interrupted, run_dir=tmp_path / "resumed", resume="latest")
    assert second.status == "finished" and second.step == 24
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_grad_accumulation_matches_one_big_batch(toy_registry, tmp_path):
    settings = dict(epochs=1, log_interval=4)
    one = load_experiment(toy_experiment(tmp_path / "a.toml", **settings), ["act.halt_exploration_prob=0.0"])
    two = load_experiment(
        toy_experiment(tmp_path / "b.toml", grad_accum_steps=2, **settings), ["act.halt_exploration_prob=0.0"]
    )
    train(one, run_dir=tmp_path / "one")
    train(two, run_dir=tmp_path / "two")
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)
    assert a["input.puzzle_emb.weights"].abs().sum() > 0  # sign-SGD saw the accumulated rows


def test_crash_during_save_keeps_last_checkpoint(toy_registry, tmp_path, monkeypatch):
    experiment = load_experiment(toy_experiment(tmp_path / "exp.toml", epochs=4, checkpoint_every_steps=6))
    real_save = torch.save
    calls = []

    def crashing_save(obj, path, *args, **kwargs):
        calls.append(path)
        if "step_12" in str(path) and len([c for c in calls if "step_12" in str(c)]) == 2:
            raise KeyboardInterrupt("power cut")  # half of step 12 is on disk
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        train(experiment)
    checkpoints = tmp_path / "runs" / "toy" / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "step_6"
    assert not (checkpoints / "step_12").exists()
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    resumed = train(experiment, resume="latest")  # the half-written folder is simply redone
    assert resumed.status == "finished" and resumed.step == 16


def test_nan_loss_stops_naming_step_and_checkpoint(toy_registry, tmp_path):
    experiment = load_experiment(
        toy_experiment(tmp_path / "exp.toml", epochs=2, checkpoint_every_steps=4, log_interval=4)
    )
    trainer = Trainer(experiment)
    original = trainer.run.loss_head.forward

    def poisoned(carry, batch, exploration=None):
        carry, loss, metrics, outputs, halted = original(carry, batch, exploration)
        if trainer.step + 1 >= 6:
            loss = loss * float("nan")
        return carry, loss, metrics, outputs, halted

    trainer.run.loss_head.forward = poisoned
    with pytest.raises(TrainingError) as error:
        trainer.train()
    message = str(error.value)
    assert "at step 6" in message and "step_4" in message
    assert (tmp_path / "runs" / "toy" / "checkpoints" / "latest").read_text().strip() == "step_4"


def test_corrupt_checkpoint_gives_clear_error(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    assert CliRunner().invoke(main, ["run", str(path)]).exit_code == 0
    state = tmp_path / "runs" / "toy" / "checkpoints" / "step_4" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    result = CliRunner().invoke(main, ["run", str(path), "--resume", "latest"])
    assert result.exit_code == 1
    assert str(state) in result.output and "corrupt or truncated" in result.output
    with pytest.raises(CheckpointError):
        load_checkpoint(state.parent)


def test_eval_command_scores_a_checkpoint(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=20)
    assert CliRunner().invoke(main, ["run", str(path)]).exit_code == 0
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "runs" / "toy")])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output[result.output.index("{") :])
    assert scores["exact/count"] == 16 and scores["exact/accuracy"] > 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_from_outside_saves_and_exits_143(toy_env, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1000, log_interval=1)
    process = subprocess.Popen(
        [sys.executable, "-m", "rrcore", "run", str(path)], env=toy_env, stderr=subprocess.PIPE, text=True
    )
    metrics = tmp_path / "runs" / "toy" / "metrics.jsonl"
    deadline = time.time() + 60
    while not (metrics.exists() and metrics.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err  # 128 + SIGTERM: a scheduler sees "interrupted"
    assert "interrupted by SIGTERM at step" in err and "--resume latest" in err
    step = int((tmp_path / "runs" / "toy" / "checkpoints" / "latest").read_text().strip().split("_")[1])
    assert step >= 1


def test_two_gloo_processes_match_one(toy_env, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=2)
    single = subprocess.run(
        [sys.executable, "-m", "rrcore", "run", str(path), "--run-dir", str(tmp_path / "one")],
        env=toy_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    double = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={_free_port()}",
            "-m",
            "rrcore",
            "run",
            str(path),
            "--run-dir",
            str(tmp_path / "two"),
        ],
        env={**toy_env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr
    assert (tmp_path / "two" / "checkpoints" / "step_8" / "rank1.pt").exists()
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)


def test_wandb_logger_without_the_package_says_how_to_install_it(toy_registry, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    experiment = load_experiment(
        toy_experiment(tmp_path / "exp.toml", epochs=1, extra='[[loggers]]\nplugin = "wandb"\nproject = "x"\n')
    )
    with pytest.raises(TrainingError, match=r"logger plugin 'wandb' \(rrcore .*pip install 'rrcore\[wandb\]'"):
        train(experiment)
