"""``rr new-plugin``: the package it writes installs, lists, passes its own tests and trains."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rrcore.cli.main import main
from rrcore.contracts.config import load_raw
from rrcore.tools.scaffold import PluginNames, render


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["My-Model", "--kind", "model"],
            "rr: error: NAME 'My-Model' is not a plugin name: use 1-40 lowercase "
            "letters, digits and '_', starting with a letter (e.g. 'mymodel')\n",
        ),
        (["2nd", "--kind", "task"], "rr: error: NAME '2nd' is not a plugin name"),
        (
            ["toy", "--kind", "model"],
            "rr: error: NAME 'toy': a model plugin of that name is installed (rr-toy 0.1.0); choose another name\n",
        ),
        (["toy", "--kind", "task"], "rr: error: NAME 'toy': a dataset plugin of that name is installed"),
        (
            ["fresh", "--kind", "model", "--author", "<ada@example.org>"],
            """rr: error: --author '<ada@example.org>': expected "Name <email>" or "Name\"""",
        ),
        (
            ["fresh", "--kind", "task", "--url", "github.com/me/rr-fresh"],
            "rr: error: --url 'github.com/me/rr-fresh': expected an http(s):// address",
        ),
    ],
)
def test_bad_names_are_one_line_errors(toy_registry, tmp_path, arguments, message):
    result = CliRunner().invoke(main, ["new-plugin", *arguments, "--output", str(tmp_path / "new")])
    assert result.exit_code == 2
    assert result.output.startswith(message) and result.output.count("\n") == 1
    assert not (tmp_path / "new").exists()


def test_a_folder_that_holds_something_is_refused(toy_registry, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["new-plugin", "fresh", "--kind", "model", "--output", str(tmp_path / "taken")])
    assert result.exit_code == 2
    assert result.output == (
        f"rr: error: --output {tmp_path / 'taken'}: exists and is not an empty folder; choose a new folder\n"
    )
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]


def test_the_model_example_starts_from_a_copy_of_rrs_4x4_base(tmp_path):
    """The package carries the base its example names (an installed rrcore has no examples),
    the same file as rr's, so the example trains as rr's 4x4 demos do, with the demo's recipe."""
    render("model", PluginNames.of("based"), tmp_path / "rr-based")
    root = Path(__file__).resolve().parents[1]
    copied = tmp_path / "rr-based" / "examples" / "base" / "sudoku4x4.toml"
    assert copied.read_bytes() == (root / "examples" / "base" / "sudoku4x4.toml").read_bytes(), (
        "rrcore/templates/model/examples/base/sudoku4x4.toml.tmpl must be a copy of examples/base/sudoku4x4.toml"
    )
    example = load_raw(tmp_path / "rr-based" / "examples" / "sudoku4x4.toml")
    demo = load_raw(root / "examples" / "sudoku4x4-trm.toml")
    assert example["train"] == demo["train"] and example["data"] == demo["data"] and example["act"] == demo["act"]
    assert example["model"]["plugin"] == "based" and example["model"]["hidden_size"] == demo["model"]["hidden_size"]


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_generated_plugins_install_list_pass_their_tests_and_train(tmp_path):
    """Both kinds, installed as they come (pip, into a folder put on PYTHONPATH): they show in
    rr list-plugins, their generated tests (the conformance kit) pass, and each trains a few
    steps: the model on the 4x4 Sudoku demo task, the task with TRM."""
    for name, kind in (("kitmodel", "model"), ("kittask", "task")):
        result = CliRunner().invoke(main, ["new-plugin", name, "--kind", kind, "--output", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    # Without build isolation when setuptools is here (no download); a fresh venv may lack it.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            *isolation,
            "--target",
            str(site),
            str(tmp_path / "kitmodel"),
            str(tmp_path / "kittask"),
        ],
        dict(os.environ),
        tmp_path,
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "RR_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("RR_LOAD_PLUGINS", None)
    rr = [sys.executable, "-m", "rrcore"]

    listing = json.loads(_run([*rr, "list-plugins", "--json"], env, tmp_path).stdout)
    rows = {(row["kind"], row["name"]): row["distribution"] for row in listing["components"]}
    assert rows[("model", "kitmodel")] == "rr-kitmodel"
    assert rows[("dataset", "kittask")] == rows[("evaluator", "kittask")] == "rr-kittask"
    assert listing["failures"] == []

    # The model declares predicts_q_continue; its example leaves [act] q_continue to follow it.
    example = tmp_path / "kitmodel" / "examples" / "sudoku4x4.toml"
    assert "q_continue =" not in example.read_text()
    resolved = _run([*rr, "validate", str(example)], env, tmp_path).stdout
    assert "q_continue = false" in resolved.split("[act]")[1].split("\n[")[0]

    # Their own tests, from their own folders, run the conformance kit on the installed plugins.
    tests = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "kitmodel/tests", "kittask/tests"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    quick = [
        "--set",
        "train.max_steps=3",
        "--set",
        "train.eval_interval=0",
        "--set",
        "run.device='cpu'",
        "--set",
        "train.compile='off'",
        "--set",
        "run.cpu_threads=1",
        "--set",
        f"run.out_dir={str(tmp_path / 'runs')!r}",
    ]
    trained = _run(
        [
            *rr,
            "run",
            "kitmodel/examples/sudoku4x4.toml",
            *quick,
            "--set",
            "data.train_size=100",
            "--set",
            "data.test_size=10",
            "--set",
            "data.jobs=1",
        ],
        env,
        tmp_path,
    )
    assert "rr: finished sudoku4x4-kitmodel at step 3" in trained.stderr
    assert "sudoku/exact_accuracy" in trained.stderr
    trained = _run(
        [
            *rr,
            "run",
            "kittask/examples/kittask-trm.toml",
            *quick,
            "--set",
            "data.train_size=128",
            "--set",
            "data.test_size=16",
        ],
        env,
        tmp_path,
    )
    assert "rr: finished kittask-trm at step 3" in trained.stderr
    assert "kittask/exact_accuracy" in trained.stderr and "kittask/sorted_rate" in trained.stderr

    output, _ = tests.communicate(timeout=600)
    assert tests.returncode == 0, output
    assert "4 passed" in output  # the conformance kit and the README check, per plugin
