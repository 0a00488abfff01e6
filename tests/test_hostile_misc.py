"""Accidents and attacks that must end in one line and a clear exit code (issue 28, part C).

A full disk (checkpoint, config.toml, metrics.jsonl), SIGTERM during a parallel data
build, two plugins registering one name, a string where a list belongs, a sweep too large
to run, a partial export left behind, a checkpoint holding a pickle torch.load refuses,
and rr report's hint on a run folder without checkpoints. Each case asserts the exit
code, one ``rr: error: `` line and no traceback.
"""

from __future__ import annotations

import builtins
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from toy_helpers import make_distribution, one_error_line, toy_experiment

import rrcore.base.files as files_module
import rrcore.training.checkpoint as checkpoint_module
import rrcore.training.loggers as loggers_module
from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.contracts.registry import set_registry
from rrcore.tools import sweep as sweep_module
from rrcore.training.loop import train


def _rr(*args: str):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def _latest(run_dir: Path) -> str:
    return (run_dir / "checkpoints" / "latest").read_text().strip()


def _full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# -- a full disk -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["oserror", "torch"])
def test_a_full_disk_at_a_checkpoint_keeps_the_previous_one_and_says_so(toy_registry, tmp_path, monkeypatch, how):
    path = toy_experiment(tmp_path / "exp.toml", epochs=4, checkpoint_every_steps=4)
    run_dir = tmp_path / "runs" / "toy"
    real_save = torch.save

    def full_at_step_8(state, handle, *args, **kwargs):
        if ".tmp-step_8" in handle.name and handle.name.endswith("state.pt"):
            handle.write(b"the first bytes fit")
            if how == "oserror":
                raise _full()
            try:  # torch.save into a full disk: the ENOSPC, then its own error while closing
                raise _full()
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534") from None
        return real_save(state, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", full_at_step_8)
    line = one_error_line(
        _rr("run", path),
        2,
        f"rr: error: no space left on device writing {run_dir / 'checkpoints' / '.tmp-step_8' / 'state.pt'}",
        f"the last checkpoint, {run_dir / 'checkpoints' / 'step_4'}, is intact",
        "--resume latest",
    )
    assert _latest(run_dir) == "step_4"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", "step_4"]  # no partial folder
    assert (run_dir / "config.toml").read_text() == (run_dir / "checkpoints" / "step_4" / "config.toml").read_text()
    # Space freed, the command the message gives finishes the run.
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    command = line.split("continue with: ", 1)[1].split()
    assert command[:2] == ["rr", "run"]
    resumed = _rr(*command[1:])
    assert resumed.exit_code == 0, resumed.output
    assert _latest(run_dir) == "step_16"


class _FullFile:
    """A file on a full disk: opening it worked (a real disk leaves it empty), writing does
    not, from the ``fits``-th write on."""

    def __init__(self, real, fits: int = 0) -> None:
        self.real, self.fits = real, fits

    def write(self, text):
        if self.fits <= 0:
            raise _full()
        self.fits -= 1
        return self.real.write(text)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def _config_on_a_full_disk(monkeypatch) -> None:
    def full_open(path, mode="r", *args, **kwargs):
        real = builtins.open(path, mode, *args, **kwargs)
        return _FullFile(real) if Path(path).name == ".config.toml.tmp" else real

    monkeypatch.setattr(files_module, "open", full_open, raising=False)


def test_a_full_disk_at_the_start_leaves_no_empty_config(toy_registry, tmp_path, monkeypatch):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    run_dir = tmp_path / "runs" / "toy"
    _config_on_a_full_disk(monkeypatch)
    one_error_line(
        _rr("run", path),
        2,
        f"rr: error: no space left on device writing {run_dir / 'config.toml'}; no checkpoint was saved",
    )
    assert not (run_dir / "config.toml").exists() and not (run_dir / ".config.toml.tmp").exists()
    monkeypatch.undo()
    assert _rr("run", path).exit_code == 0  # nothing of the failed start is in the way


def test_a_full_disk_when_resuming_keeps_the_config(toy_registry, tmp_path, monkeypatch):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    run_dir = tmp_path / "runs" / "toy"
    assert _rr("run", path).exit_code == 0
    config, latest = (run_dir / "config.toml").read_bytes(), _latest(run_dir)
    _config_on_a_full_disk(monkeypatch)
    one_error_line(
        _rr("run", path, "--resume", "latest"),
        2,
        f"no space left on device writing {run_dir / 'config.toml'}; the last checkpoint",
    )
    assert (run_dir / "config.toml").read_bytes() == config and _latest(run_dir) == latest


def test_a_full_disk_at_a_metrics_line_names_metrics_jsonl(toy_registry, tmp_path, monkeypatch):
    path = toy_experiment(tmp_path / "exp.toml", epochs=4, checkpoint_every_steps=4, log_interval=2)
    run_dir = tmp_path / "runs" / "toy"
    opened = loggers_module.JsonlLogger.__init__

    def three_lines_fit(self, config, context):
        opened(self, config, context)
        self._file = _FullFile(self._file, fits=3)

    monkeypatch.setattr(loggers_module.JsonlLogger, "__init__", three_lines_fit)
    line = one_error_line(
        _rr("run", path), 2, f"rr: error: no space left on device writing {run_dir / 'metrics.jsonl'}"
    )
    assert f"the last checkpoint, {run_dir / 'checkpoints' / _latest(run_dir)}, is intact" in line
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_full_disk_during_an_export_leaves_no_partial_folder(toy_run, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise _full()

    monkeypatch.setattr(Path, "write_bytes", full)
    one_error_line(
        _rr("export", toy_run, tmp_path / "export"), 2, f"no space left on device writing {tmp_path / 'export'}"
    )
    assert not (tmp_path / ".export.partial").exists() and not (tmp_path / "export").exists()


# -- SIGTERM during a parallel data build ------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads worker processes from /proc (Linux)")
@pytest.mark.parametrize("to", ["process", "group"])
def test_sigterm_during_a_parallel_build_is_one_line_and_leaves_no_temporary_folder(tmp_path, to):
    cache = tmp_path / "cache"
    env = {key: value for key, value in os.environ.items() if key != "RR_LOAD_PLUGINS"}
    settings = ["source=generate", "size=9", "train_size=50000", "test_size=10", "jobs=2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "rrcore", "data", "build", "sudoku", "--cache-dir", str(cache)]
        + [word for setting in settings for word in ("--set", setting)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # a group of its own, as a scheduler's job
    )
    deadline = time.monotonic() + 60
    while not (len(_children(process.pid)) >= 2 and cache.is_dir() and any(cache.iterdir())):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    workers = _children(process.pid)
    if to == "group":
        os.killpg(process.pid, signal.SIGTERM)
    else:  # the workers are left to the parent to stop
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)  # EOF only when the workers, too, have gone
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert errors == ["rr: error: interrupted by SIGTERM before the data set was built; nothing was saved"], stderr
    assert list(cache.iterdir()) == []  # the temporary folder went with the build
    assert not any(Path(f"/proc/{worker}").exists() for worker in workers)


# -- two plugins registering one name ----------------------------------------------------

IMPOSTOR = """
from rrcore import hookimpl
from rrcore.training.builtin import ExactEvaluator
from rrcore.contracts.specs import EvaluatorSpec

@hookimpl
def rr_register_evaluators():
    return [EvaluatorSpec(name="{name}", factory=ExactEvaluator, description="{description}")]
"""


@pytest.fixture
def toy_run(toy_registry, tmp_path) -> Path:
    """A finished toy run (evaluator ``exact``)."""
    train(load_experiment(toy_experiment(tmp_path / "exp.toml", epochs=1)), run_dir=tmp_path / "run")
    return tmp_path / "run"


def test_a_name_two_plugins_register_is_one_line_where_it_is_used(toy_run, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(
        site,
        "rr-impostor",
        {"rr_impostor": IMPOSTOR.format(name="exact", description="x")},
        {"impostor": "rr_impostor"},
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("RR_LOAD_PLUGINS", "toy,impostor")
    set_registry(None)
    clash = "evaluator 'exact' is registered twice: by rrcore and by rr-impostor"
    one_error_line(_rr("report", toy_run), 2, clash)
    one_error_line(_rr("solve", toy_run, "0101"), 2, clash)
    one_error_line(_rr("eval", toy_run), 2, clash)
    listed = _rr("list-plugins")
    one_error_line(listed, 2, clash, "RR_DISABLE_PLUGINS")
    assert "rr-toy" in listed.stdout  # the rest of the list is there
    # What does not use the name works.
    assert _rr("data", "build", "toy", "--cache-dir", tmp_path / "cache").exit_code == 0
    assert _rr("validate", tmp_path / "exp.toml", "--set", "evaluators=[]").exit_code == 0


def test_a_clash_leaves_the_commands_of_other_plugins_in_place(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    for dist, module in (("rr-one", "rr_one"), ("rr-two", "rr_two")):
        make_distribution(
            site, dist, {module: IMPOSTOR.format(name="same", description=dist)}, {module.removeprefix("rr_"): module}
        )
    env = {key: value for key, value in os.environ.items() if key != "RR_LOAD_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "rrcore", "sudoku", "--help"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "label" in result.stdout and result.stderr == ""


# -- a string where a list belongs; a sweep too large ------------------------------------


def test_a_string_for_a_list_is_one_line_not_one_per_character(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml")
    one_error_line(
        _rr("validate", path, "--set", "train.eval_at_minutes=abcdef"),
        2,
        "train.eval_at_minutes: expected list[float], got str 'abcdef'",
    )
    one_error_line(
        _rr("sweep", path, "--grid", "train.eval_at_minutes=abcdef,xyz", "--print-commands"),
        2,
        "train.eval_at_minutes: expected list[float], got str 'abcdef'",
    )


def test_a_grid_too_large_is_refused_at_once_with_its_count(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml")
    values = ",".join(str(n) for n in range(1, 2001))
    started = time.perf_counter()
    result = _rr("sweep", path, "--grid", f"train.lr={values}", "--grid", f"run.seed={values}")
    one_error_line(result, 2, "--grid: 4,000,000 runs (2000 x 2000); one sweep runs at most 10,000", "--print-commands")
    assert time.perf_counter() - started < 10  # counted, not planned
    assert not (tmp_path / "runs").exists()


def test_print_commands_streams_a_grid_beyond_the_cap(toy_registry, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "MAX_RUNS", 10)
    path = toy_experiment(tmp_path / "exp.toml")
    grid = ["--grid", "train.lr=1e-3,2e-3,3e-3,4e-3", "--grid", "run.seed=1,2,3,4"]
    one_error_line(_rr("sweep", path, *grid), 2, "16 runs (4 x 4); one sweep runs at most 10")
    result = _rr("sweep", path, *grid, "--print-commands")
    assert result.exit_code == 0, result.output
    commands = result.stdout.splitlines()
    assert len(commands) == 16 and "train.lr=4e-3" in commands[-1] and "run.seed=4" in commands[-1]
    # Each value is still checked, once.
    one_error_line(_rr("sweep", path, *grid[:3], "run.seed=1,2,3,-4", "--print-commands"), 2, "run.seed = -4")


# -- a partial export left behind ------------------------------------------------------


def test_a_partial_export_left_by_a_crash_is_removed_saying_so(toy_run, tmp_path):
    partial = tmp_path / ".export.partial"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"cut short")
    result = _rr("export", toy_run, tmp_path / "export")
    assert result.exit_code == 0, result.output
    assert f"rr: removing {partial}, left by an export that did not finish" in result.stderr
    assert not partial.exists() and (tmp_path / "export" / "model.safetensors").stat().st_size > 100


def test_a_folder_of_other_files_where_the_partial_export_goes_is_refused(toy_run, tmp_path):
    partial = tmp_path / ".export.partial"
    partial.mkdir()
    (partial / "notes.txt").write_text("mine")
    one_error_line(_rr("export", toy_run, tmp_path / "export"), 2, f"{partial}: in the way")
    assert (partial / "notes.txt").read_text() == "mine" and not (tmp_path / "export").exists()


# -- a checkpoint holding a pickle torch.load refuses ----------------------------------


class _Payload:
    """Would touch ``marker`` if it were unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("command", ["eval", "solve", "export", "report", "analyze"])
def test_a_rejected_pickle_is_bad_input_in_every_command(toy_run, tmp_path, command):
    marker = tmp_path / "pwned"
    state = toy_run / "checkpoints" / _latest(toy_run) / "state.pt"
    torch.save({"model": _Payload(marker)}, state)
    args = {
        "eval": [toy_run],
        "solve": [toy_run, "0101"],
        "export": [toy_run, tmp_path / "export"],
        "report": [toy_run],
        "analyze": [toy_run],
    }[command]
    one_error_line(_rr(command, *args), 2, f"{state}: cannot be read")
    assert not marker.exists()


def test_rr_report_without_a_checkpoint_offers_no_option_it_lacks(toy_registry, tmp_path):
    run = tmp_path / "unsaved"
    run.mkdir()
    (run / "config.toml").write_text(toy_experiment(tmp_path / "exp.toml").read_text())
    line = one_error_line(_rr("report", run), 2, "no checkpoint saved yet")
    assert "--untrained" not in line
    assert "--untrained" in one_error_line(_rr("analyze", run), 2, "no checkpoint saved yet")
