"""Run folders under attack and accident (issue 28, part A): one writer per run folder,
``run.name`` that stays one folder name, a folder of the user's files never written or
moved, and readers that never find their checkpoint rotated away.

Every refusal is exit 2 with one line, no traceback, and nothing written outside the
folder the run was meant to have (the tree under ``tmp_path`` is compared)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore.cli.main import main
from rrcore.training.checkpoint import hold_checkpoint, list_checkpoints, save_checkpoint
from rrcore.training.rundir import LOCK_FILE


def _rr(*args: str):
    return CliRunner().invoke(main, list(args))


def _tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` (but the top-level names in ``skip``) with its size and mtime."""
    return {
        str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.relative_to(root).parts[0] not in skip
    }


def _refused(result, *starts: str) -> str:
    """The one error line of a command that exited 2 on its own (no traceback)."""
    output = result.output if hasattr(result, "output") else result.stderr
    code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    assert code == 2, output
    assert "Traceback" not in output, output
    if hasattr(result, "exception"):
        assert isinstance(result.exception, SystemExit), result.exception
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("rr: error: "), output
    for start in starts:
        assert start in lines[0], output
    return lines[0]


# -- names are names -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../../escaped",
        "..",
        ".",
        "runs-inside/nested",
        "back\\\\slash",  # TOML for one backslash
        "a\\u0000b",  # TOML for a NUL
        "x" * 300,
        "ABSOLUTE",
    ],
)
def test_a_run_name_that_is_not_one_folder_name_is_refused(toy_registry, tmp_path, name):
    path = toy_experiment(tmp_path / "exp.toml")
    if name == "ABSOLUTE":
        name = str(tmp_path / "absolute")
    before = _tree(tmp_path)

    result = _rr("run", str(path), "--set", f'run.name="{name}"')

    line = _refused(result, f"{path}: run.name = ", "must be one folder name")
    assert "\x00" not in line and len(line) < 300
    assert _tree(tmp_path) == before
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "absolute").exists()


def test_an_empty_run_name_with_overwrite_leaves_the_output_folder_and_its_runs_alone(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml")
    other = tmp_path / "runs" / "other-run"
    other.mkdir(parents=True)
    (other / "metrics.jsonl").write_text('{"step": 2}\n')
    before = _tree(tmp_path)

    result = _rr("run", str(path), "--set", 'run.name=""', "--overwrite")

    _refused(result, 'run.name = ""')
    assert _tree(tmp_path) == before
    assert not (tmp_path / "runs.old-1").exists()


# -- a folder of the user's files is not an rr run -------------------------------------


def _users_folder(folder: Path) -> Path:
    (folder / "plots").mkdir(parents=True)
    (folder / "config.toml").write_text("# my own settings\n")
    (folder / "resume.sh").write_text("echo mine\n")
    (folder / "plots" / "figure.png").write_bytes(b"\x89PNG")
    return folder


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_the_users_files_is_neither_written_nor_moved(toy_registry, tmp_path, overwrite):
    path = toy_experiment(tmp_path / "exp.toml")
    folder = _users_folder(tmp_path / "mine")
    before = _tree(tmp_path)

    result = _rr("run", str(path), "--run-dir", str(folder), *["--overwrite"] * overwrite)

    _refused(result, f"{folder} holds 3 files or folders that are not an rr run", "--run-dir")
    assert _tree(tmp_path) == before  # no lock file in it, no mine.old-1 beside it
    assert (folder / "config.toml").read_text() == "# my own settings\n"


def test_resume_into_a_folder_of_the_users_files_is_refused(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    assert _rr("run", str(path)).exit_code == 0
    checkpoint = tmp_path / "runs" / "toy" / "checkpoints" / "step_4"
    folder = _users_folder(tmp_path / "mine")
    before = _tree(tmp_path)

    result = _rr("run", str(path), "--run-dir", str(folder), "--resume", str(checkpoint))

    _refused(result, f"{folder} holds 3 files or folders that are not an rr run")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("spelling", [".", "absolute", ".."])
def test_overwrite_never_moves_the_current_folder(toy_registry, tmp_path, monkeypatch, spelling):
    path = toy_experiment(tmp_path / "exp.toml")
    here = tmp_path / "work" / "here"
    here.mkdir(parents=True)
    (here / "notes.txt").write_text("mine\n")
    monkeypatch.chdir(here)
    run_dir = str(here) if spelling == "absolute" else spelling
    before = _tree(tmp_path)

    result = _rr("run", str(path), "--run-dir", run_dir, "--overwrite")

    _refused(result, f"--overwrite would move {run_dir} aside, and with it the current folder")
    assert _tree(tmp_path) == before
    assert Path.cwd() == here


def test_overwrite_moves_an_rr_run_aside_with_its_mark(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    assert _rr("run", str(path)).exit_code == 0
    run_dir = tmp_path / "runs" / "toy"
    assert (run_dir / LOCK_FILE).read_text() == ""  # the run ended: no pid left behind

    assert _rr("run", str(path), "--overwrite").exit_code == 0
    aside = tmp_path / "runs" / "toy.old-1"
    assert (aside / LOCK_FILE).exists() and (aside / "checkpoints" / "step_4").exists()
    # The old run is still an rr run: --overwrite into it moves it again, and nothing else.
    assert _rr("run", str(path), "--run-dir", str(aside), "--overwrite").exit_code == 0
    assert (tmp_path / "runs" / "toy.old-1.old-1" / "checkpoints" / "step_4").exists()


# -- one writer per run folder ----------------------------------------------------------


def _start(path: Path, run_dir: Path, env: dict[str, str], *settings: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "rrcore", "run", str(path), "--run-dir", str(run_dir)]
    for setting in settings:
        args += ["--set", setting]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, what: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _steps(run_dir: Path) -> list[int]:
    """The steps of the training lines of ``metrics.jsonl``."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["step"] for line in lines if "train/loss" in line]


def test_two_concurrent_runs_in_one_folder_one_trains_and_the_other_exits_2(toy_env, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=2, log_interval=1)
    run_dir = tmp_path / "runs" / "conc"
    env = {**toy_env, "RR_TOY_STEP_SECONDS": "0.5"}  # 8 steps: the first is still training when the second starts
    runs = [_start(path, run_dir, env, f"train.lr={lr}") for lr in (0.003, 0.001)]
    outcomes = [(process, *process.communicate(timeout=180)) for process in runs]

    assert sorted(process.returncode for process, _, _ in outcomes) == [0, 2], [err for _, _, err in outcomes]
    (winner, _, _), (loser, _, err) = sorted(outcomes, key=lambda outcome: outcome[0].returncode)
    host = socket.gethostname()
    line = err.strip()
    assert line.count("\n") == 0 and "Traceback" not in err, err
    assert line == (
        f"rr: error: {run_dir} is in use by another rr run (pid {winner.pid} on host {host}); "
        f"wait for it to end, or choose another --run-dir"
    )
    assert _steps(run_dir) == list(range(1, 9))  # one run's steps, not two interleaved
    lr = 0.003 if winner is runs[0] else 0.001
    assert f"lr = {lr}" in (run_dir / "config.toml").read_text()
    for checkpoint in list_checkpoints(run_dir / "checkpoints"):
        assert f"lr = {lr}" in (checkpoint / "config.toml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "exp.toml", "runs"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["conc"]


def test_resume_while_the_run_lives_is_refused_and_a_killed_runs_lock_is_taken_over(toy_env, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1000, log_interval=1, checkpoint_every_steps=2)
    run_dir = tmp_path / "runs" / "live"
    live = _start(path, run_dir, {**toy_env, "RR_TOY_STEP_SECONDS": "0.05"})
    try:
        _wait_for(lambda: (run_dir / "checkpoints" / "latest").exists(), "the first checkpoint")
        holder = json.loads((run_dir / LOCK_FILE).read_text())
        assert holder == {"pid": live.pid, "host": socket.gethostname()}
        for extra in (["--resume", "latest"], ["--overwrite"], ["--set", "train.lr=0.001"]):
            second = subprocess.run(
                [sys.executable, "-m", "rrcore", "run", str(path), "--run-dir", str(run_dir), *extra],
                env=toy_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            _refused(second, f"{run_dir} is in use by another rr run (pid {live.pid} on host ")
            assert not (tmp_path / "runs" / "live.old-1").exists()
    finally:
        live.send_signal(signal.SIGKILL)  # dies holding the lock: the kernel drops it
        live.wait(timeout=60)
    assert live.returncode == -signal.SIGKILL

    steps = _steps(run_dir)
    assert steps == sorted(set(steps))  # the refused runs wrote nothing
    after = subprocess.run(
        [sys.executable, "-m", "rrcore", "run", str(path), "--run-dir", str(run_dir), "--overwrite"]
        + ["--set", "train.epochs=1", "--set", "train.checkpoint_every_steps=0"],
        env=toy_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert after.returncode == 0, after.stderr
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_4"
    assert _steps(tmp_path / "runs" / "live.old-1") == steps


# -- readers never find their checkpoint rotated away ----------------------------------


def _save_next(checkpoints: Path, keep: int = 1) -> Path:
    """What a run writing into ``checkpoints`` does at its next save: a new step, then rotation."""
    latest = checkpoints / (checkpoints / "latest").read_text().strip()
    step = int(latest.name.split("_")[1]) + 1
    state = torch.load(latest / "state.pt", weights_only=True)
    rank = torch.load(latest / "rank0.pt", weights_only=True)
    progress = {**json.loads((latest / "trainer.json").read_text()), "step": step}
    return save_checkpoint(checkpoints, step, state, rank, progress, (latest / "config.toml").read_text(), keep=keep)


def test_rr_eval_keeps_the_checkpoint_it_found_while_a_save_rotates_with_keep_1(toy_registry, tmp_path, monkeypatch):
    import rrcore.tools.evaluate

    path = toy_experiment(tmp_path / "exp.toml", epochs=1, keep_checkpoints=1)
    assert _rr("run", str(path)).exit_code == 0
    checkpoints = tmp_path / "runs" / "toy" / "checkpoints"
    build_run = rrcore.tools.evaluate.build_run

    def build_while_the_run_saves(*args, **kwargs):  # after rr eval found step_4, before it loads it
        _save_next(checkpoints)
        return build_run(*args, **kwargs)

    monkeypatch.setattr(rrcore.tools.evaluate, "build_run", build_while_the_run_saves)
    result = _rr("eval", str(tmp_path / "runs" / "toy"), "--output", str(tmp_path / "scores"))

    assert result.exit_code == 0, result.output
    assert (tmp_path / "scores" / "exact" / "results.json").exists()
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step_4", "step_5"]  # step_4 held, kept
    monkeypatch.setattr(rrcore.tools.evaluate, "build_run", build_run)
    _save_next(checkpoints)  # nobody holds step_4 now: the next rotation removes it
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step_6"]


def test_rr_report_keeps_the_checkpoint_it_found_while_a_save_rotates(toy_registry, tmp_path, monkeypatch):
    import rrcore.tools.stepwise
    from rrcore.tools.stepwise import open_run

    path = toy_experiment(tmp_path / "exp.toml", epochs=1, keep_checkpoints=1)
    assert _rr("run", str(path)).exit_code == 0
    checkpoints = tmp_path / "runs" / "toy" / "checkpoints"
    build_run = rrcore.tools.stepwise.build_run

    def build_while_the_run_saves(*args, **kwargs):
        _save_next(checkpoints)
        return build_run(*args, **kwargs)

    monkeypatch.setattr(rrcore.tools.stepwise, "build_run", build_while_the_run_saves)
    with open_run(tmp_path / "runs" / "toy") as opened:  # what rr report and rr analyze open
        assert opened.label == "step_4"
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step_4", "step_5"]


def test_a_checkpoint_rotated_away_while_being_held_is_found_again(toy_registry, tmp_path, monkeypatch):
    import rrcore.training.checkpoint

    path = toy_experiment(tmp_path / "exp.toml", epochs=1, keep_checkpoints=1)
    assert _rr("run", str(path)).exit_code == 0
    checkpoints = tmp_path / "runs" / "toy" / "checkpoints"
    hold = rrcore.training.checkpoint._hold
    saves = []

    def hold_after_a_save(found: Path):  # the race: resolved step_4, rotated before it is held
        if not saves:
            saves.append(_save_next(checkpoints))
        return hold(found)

    monkeypatch.setattr(rrcore.training.checkpoint, "_hold", hold_after_a_save)
    with hold_checkpoint("latest", checkpoints) as held:
        assert held == checkpoints / "step_5" and (held / "state.pt").exists()
        assert [p.name for p in list_checkpoints(checkpoints)] == ["step_5"]
    assert os.path.exists(held)
