"""``rr data build``: the folder ``rr run`` trains on, keys from the plugin's config class,
and bad keys or values answered with one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rrcore.cli.main import main

EXAMPLE = Path(__file__).parents[1] / "examples" / "sudoku4x4-trm.toml"
SMALL = ["--set", "train_size=16", "--set", "test_size=4", "--set", "jobs=1"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _one_error_line(result) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rr: error: "), result.stderr
    return lines[0]


def test_an_example_builds_the_folder_rr_run_trains_on(cache, tmp_path):
    pytest.importorskip("rr_sudoku")
    pytest.importorskip("rr_trm")
    built = CliRunner().invoke(main, ["data", "build", str(EXAMPLE), *SMALL])
    assert built.exit_code == 0, built.output
    folder = Path(built.stdout.strip())
    assert folder.parent == cache and folder.name.startswith("sudoku4x4-")
    assert "train: 16 groups, 80 puzzles, 80 examples of 16 tokens" in built.stderr  # num_aug = 4
    stamp = (folder / "build.json").stat().st_mtime_ns

    again = CliRunner().invoke(
        main,
        ["data", "build", str(EXAMPLE), "--set", "data.train_size=16", "--set", "data.test_size=4", "--set", "jobs=1"],
    )
    assert again.stdout.strip() == str(folder) and "already built" in again.stderr

    run = CliRunner().invoke(
        main,
        [
            "run",
            str(EXAMPLE),
            "--set",
            "data.train_size=16",
            "--set",
            "data.test_size=4",
            "--set",
            "data.jobs=1",
            "--set",
            "train.max_steps=1",
            "--set",
            "train.global_batch_size=8",
            "--set",
            "run.device='cpu'",
            "--set",
            "train.compile='off'",
            "--run-dir",
            str(tmp_path / "run"),
        ],
    )
    assert run.exit_code == 0, run.output
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [folder.name]  # nothing else built
    assert (folder / "build.json").stat().st_mtime_ns == stamp  # and the build was not redone


def test_a_plugin_name_builds_with_its_defaults_and_the_settings(tmp_path):
    pytest.importorskip("rr_sudoku")
    result = CliRunner().invoke(
        main,
        [
            "data",
            "build",
            "sudoku",
            "--set",
            "source=generate",
            "--set",
            "size=4",
            *SMALL,
            "--cache-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    folder = Path(result.stdout.strip())
    assert folder.parent == tmp_path
    meta = json.loads((folder / "train" / "dataset.json").read_text())
    assert (meta["seq_len"], meta["total_groups"], meta["sudoku"]["examples"]) == (16, 16, 16)  # num_aug 0


def test_help_lists_each_data_plugin_and_its_keys_with_defaults():
    pytest.importorskip("rr_sudoku")
    text = CliRunner().invoke(main, ["data", "build", "--help"]).output
    assert "sudoku (rr-sudoku)" in text and "built (rrcore)" in text
    assert "num_aug" in text and "int, default 0" in text
    assert "'skip' | 'reject', default \"skip\"" in text


def test_an_unknown_key_exits_2_with_one_line_naming_it(tmp_path):
    pytest.importorskip("rr_sudoku")
    line = _one_error_line(CliRunner().invoke(main, ["data", "build", "sudoku", "--set", "num_augs=3"]))
    assert line == "rr: error: --set num_augs: not a key of data plugin 'sudoku'; did you mean 'num_aug'?"
    line = _one_error_line(CliRunner().invoke(main, ["data", "build", str(EXAMPLE), "--set", "xyz=1"]))
    assert "--set xyz: not a key of data plugin 'sudoku'; valid keys: source, size," in line


def test_bad_values_and_sources_exit_2_with_one_line(tmp_path):
    pytest.importorskip("rr_sudoku")
    line = _one_error_line(CliRunner().invoke(main, ["data", "build", "sudoku", "--set", "size=nine"]))
    assert "data.size: expected int, got str 'nine'" in line
    line = _one_error_line(CliRunner().invoke(main, ["data", "build", "sudoku", "--set", "source=web"]))
    assert "data.source" in line and "'files' | 'generate'" in line
    line = _one_error_line(CliRunner().invoke(main, ["data", "build", "sudok"]))
    assert "sudok: neither an experiment file nor a data plugin (did you mean 'sudoku'?)" in line
    line = _one_error_line(CliRunner().invoke(main, ["data", "build", str(tmp_path / "nope.toml")]))
    assert "nope.toml: no such experiment file" in line
