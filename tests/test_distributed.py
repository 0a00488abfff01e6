"""Runs under ``torchrun`` with gloo on CPU: resume with another number of ranks, two
"nodes" on one host, SIGTERM and a killed rank, and ``rr bench`` across ranks.

Each test launches real ``torchrun`` processes on the toy plugin; the one-process
parts run in this process (faster). Toy data: 64 puzzles, batch 8, 4 steps per epoch.
"""

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

import torch
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore import hookimpl
from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.training.checkpoint import load_checkpoint
from rrcore.training.loop import Trainer, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def _rr_run(path: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["-m", "rrcore", "run", str(path), "--run-dir", str(run_dir), *extra]


def _two_agents(path: Path, run_dir: Path, env: dict[str, str], *extra: str) -> list[subprocess.Popen]:
    """Two torchrun agents of one job, as on two nodes: one process each, c10d rendezvous.
    The first hosts the rendezvous store, as the endpoint's node does on a cluster: the
    second starts once the store listens (started together, either could host it, and a
    signal to the host would take the other's report down with the store)."""
    port = _free_port()
    command = _torchrun(
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"localhost:{port}",
        "--rdzv-id",
        "toy",
        *_rr_run(path, run_dir, *extra),
    )

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    host = start()
    _wait_for(lambda: _listening(port) or host.poll() is not None, 60, "rendezvous store")
    assert host.poll() is None, host.communicate()[0]
    return [host, start()]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("localhost", port)) == 0


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.1)


def _worker_env(toy_env: dict[str, str], **extra: str) -> dict[str, str]:
    # One thread per worker: two ranks share the test machine's cores.
    return {**toy_env, "OMP_NUM_THREADS": "1", **extra}


def _latest(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    shared, _, _ = load_checkpoint(_latest(run_dir))
    return shared["model"]


def _assert_same_weights(a_dir: Path, b_dir: Path) -> None:
    a, b = _weights(a_dir), _weights(b_dir)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)


def _stop_at(step: int) -> types.ModuleType:
    """A plugin that sends this process SIGTERM after ``step`` (in-process runs)."""
    plugin = types.ModuleType(f"stop_at_{step}")

    @hookimpl
    def rr_on_step_end(context, step: int, metrics) -> None:  # noqa: ARG001
        if step == plugin.at:
            os.kill(os.getpid(), signal.SIGTERM)

    plugin.rr_on_step_end = rr_on_step_end
    plugin.at = step
    return plugin


def test_resume_with_another_number_of_ranks_continues_the_same_run(toy_registry, toy_env, tmp_path):
    # 1 rank to step 4, 2 ranks to step 8, 1 rank to step 12 = 1 rank straight to step 12:
    # the data stream, exploration draws and ACT carries all carry over between layouts.
    settings = dict(epochs=3, log_interval=2, lr_min_ratio=0.1)
    path = toy_experiment(tmp_path / "exp.toml", **settings)
    train(load_experiment(path), run_dir=tmp_path / "straight")

    toy_registry.register_module(_stop_at(4), name="stop4", distribution="test", version="0")
    first = train(load_experiment(path), run_dir=tmp_path / "mixed")
    toy_registry.plugin_manager.unregister(name="stop4")
    assert first.status == "interrupted" and first.step == 4

    two = subprocess.run(
        _torchrun("--standalone", "--nproc-per-node", "2", *_rr_run(path, tmp_path / "mixed", "--resume", "latest")),
        env=_worker_env(toy_env, RR_TOY_SIGNAL_AT="8:TERM"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "different rank/accumulation layout" in two.stderr, two.stderr
    assert "interrupted by SIGTERM at step 8" in two.stderr, two.stderr
    saved = json.loads((_latest(tmp_path / "mixed") / "trainer.json").read_text())
    assert saved["step"] == 8 and saved["world_size"] == 2
    assert saved["position"] == [2, 0]  # 8 batches of 8 from 32 examples per epoch

    last = train(load_experiment(path), run_dir=tmp_path / "mixed", resume="latest")
    assert last.status == "finished" and last.step == 12
    _assert_same_weights(tmp_path / "straight", tmp_path / "mixed")


def test_resume_with_other_accumulation_steps_keeps_each_rows_carry(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=3, log_interval=2)
    toy_registry.register_module(_stop_at(6), name="stop6", distribution="test", version="0")
    train(load_experiment(path), run_dir=tmp_path / "run")
    toy_registry.plugin_manager.unregister(name="stop6")
    _, saved, _ = load_checkpoint(_latest(tmp_path / "run"), rank=0)
    (carry,) = saved["carries"]

    resumed = Trainer(load_experiment(path, ["train.grad_accum_steps=4"]), run_dir=tmp_path / "run", resume="latest")
    assert len(resumed.carries) == 4 and resumed.carries[0].steps.shape == (2,)
    rows = resumed.carries
    assert torch.equal(torch.cat([c.inner["z"] for c in rows]), carry["inner"]["z"])
    assert torch.equal(torch.cat([c.steps for c in rows]), carry["steps"])
    assert torch.equal(torch.cat([c.halted for c in rows]), carry["halted"])
    assert torch.equal(torch.cat([c.current_data["inputs"] for c in rows]), carry["current_data"]["inputs"])
    generator = resumed.run.act_model.exploration_generator
    assert torch.equal(generator.get_state(), saved["rng"]["exploration"])


def test_two_nodes_on_one_host_stop_on_sigterm_together_and_resume(toy_registry, toy_env, tmp_path):
    # SIGTERM reaches one "node" only; the other node's rank learns of it at the next
    # logging step, both save the same step, and the printed command, started on both
    # nodes, ends where one uninterrupted process ends.
    path = toy_experiment(tmp_path / "exp.toml", epochs=5, log_interval=1)
    train(load_experiment(path), run_dir=tmp_path / "straight")
    run_dir = tmp_path / "nodes"
    agents = _two_agents(path, run_dir, _worker_env(toy_env, RR_TOY_STEP_SECONDS="0.05"))
    metrics = run_dir / "metrics.jsonl"
    _wait_for(lambda: metrics.exists() and metrics.stat().st_size, 60, "training step")
    agents[1].send_signal(signal.SIGTERM)
    outputs = [agent.communicate(timeout=60)[0] for agent in agents]
    assert [agent.returncode for agent in agents] == [1, 1], outputs  # torchrun: a worker failed
    text = "".join(outputs)
    assert text.count("exitcode  : 143") == 1, text  # the other agent's worker, in its report
    stopped = _latest(run_dir)
    step = int(stopped.name.split("_")[1])
    assert 0 < step < 20 and f"interrupted by SIGTERM at step {step}" in text
    assert sorted(p.name for p in stopped.glob("rank*.pt")) == ["rank0.pt", "rank1.pt"]
    assert json.loads((stopped / "trainer.json").read_text())["step"] == step
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))  # no half-written other step

    command = text.split("continue with: ")[1].splitlines()[0]
    assert "--nnodes=2 --nproc-per-node=1 --rdzv-backend=c10d" in command
    env = {
        **_worker_env(toy_env),
        "RR_RDZV_ENDPOINT": f"localhost:{_free_port()}",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), toy_env.get("PATH", "")]),
    }
    agents = [
        subprocess.Popen(command, shell=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [agent.communicate(timeout=120)[0] for agent in agents]
    assert [agent.returncode for agent in agents] == [0, 0], outputs
    assert _latest(run_dir).name == "step_20"
    _assert_same_weights(tmp_path / "straight", run_dir)


def _worker_with_rank(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of the torchrun worker with this RANK (a child of the launcher; Linux /proc)."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    for pid in children:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    raise AssertionError(f"no worker with RANK={rank} among {children}")


def test_a_killed_rank_ends_the_job_within_seconds_naming_it(toy_registry, toy_env, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1000, log_interval=1, checkpoint_every_steps=2)
    run_dir = tmp_path / "run"
    launcher = subprocess.Popen(
        _torchrun("--standalone", "--nproc-per-node", "2", *_rr_run(path, run_dir)),
        env=_worker_env(toy_env, RR_TOY_STEP_SECONDS="0.05"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for(lambda: (run_dir / "checkpoints" / "latest").exists(), 60, "checkpoint")
    os.kill(_worker_with_rank(launcher, 1), signal.SIGKILL)
    killed = time.monotonic()
    try:
        output = launcher.communicate(timeout=30)[0]
    finally:
        launcher.kill()
    seconds = time.monotonic() - killed
    assert launcher.returncode == 1 and seconds < 30
    report = output[output.index("Root Cause") :]
    assert "rank      : 1" in report and "Signal 9 (SIGKILL)" in report, output

    # The last periodic checkpoint is whole and continues the run (here on one process).
    step = int(_latest(run_dir).name.split("_")[1])
    resumed = train(load_experiment(path, [f"train.max_steps={step + 2}"]), run_dir=run_dir, resume="latest")
    assert resumed.status == "finished" and resumed.step == step + 2


def test_bench_under_torchrun_reports_each_rank_and_the_scaling_efficiency(toy_registry, toy_env, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml")
    timing = ["--steps", "4", "--warmup", "1", "--eval-batches", "1"]
    single = tmp_path / "one.json"
    alone = CliRunner().invoke(main, ["bench", str(path), *timing, "--json-out", str(single)])
    assert alone.exit_code == 0, alone.output

    two = subprocess.run(
        _torchrun(
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "rrcore",
            "bench",
            str(path),
            *timing,
            "--single-json",
            str(single),
            "--json-out",
            str(tmp_path / "two.json"),
        ),
        env=_worker_env(toy_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert two.returncode == 0, two.stderr
    figures = json.loads(two.stdout)  # one JSON document: only rank 0 prints
    assert figures == json.loads((tmp_path / "two.json").read_text())
    assert figures["world_size"] == 2 and len(figures["step_ms_per_rank"]) == 2
    assert figures["step_ms"] == max(figures["step_ms_per_rank"]) > 0
    per_rank = figures["train_examples_per_second_per_rank"]
    assert len(per_rank) == 2 and all(rate > 0 for rate in per_rank)
    assert figures["single_train_examples_per_second"] == json.loads(single.read_text())["train_examples_per_second"]
    expected = figures["train_examples_per_second"] / (2 * figures["single_train_examples_per_second"])
    # The figure is computed from the two runs; its size is timing (4 steps on shared CPU
    # cores: a clean-clone CI run measured 17.6), so only its sign is checked.
    assert figures["scaling_efficiency"] == round(expected, 3) and expected > 0

    other_batch = CliRunner().invoke(
        main, ["bench", str(path), *timing, "--set", "train.global_batch_size=16", "--single-json", str(single)]
    )
    assert other_batch.exit_code == 2
    assert "global_batch_size is 8 in the one-process figures and 16 here" in other_batch.output


def test_ranks_whose_clocks_differ_evaluate_and_stop_together(toy_registry, toy_env, tmp_path):
    """Rank 1's training clock runs 1000 s ahead of rank 0's: rank 0's clock decides for both
    (a rank that evaluated or stopped alone left the other in a collective, and gloo aborted)."""
    path = toy_experiment(
        tmp_path / "exp.toml", epochs=3, log_interval=2, time_budget_minutes=10, eval_at_minutes="[5]"
    )
    script = tmp_path / "ahead.py"
    script.write_text(
        "import os, sys, time\n"
        "from rrcore.training.clock import TrainingClock\n"
        "if os.environ['RANK'] == '1':\n"
        "    TrainingClock.seconds = property(\n"
        "        lambda c: 1000.0 + c.carried + (0 if c.started is None else time.perf_counter() - c.started)\n"
        "    )\n"
        "from rrcore.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    run = subprocess.run(
        _torchrun(
            "--standalone", "--nproc-per-node", "2", str(script), "run", str(path), "--run-dir", str(tmp_path / "r")
        ),
        env=_worker_env(toy_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "finished toy at step 12" in run.stderr and "time budget" not in run.stderr, run.stderr
