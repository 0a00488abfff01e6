"""Provenance: every run folder and export records what made it (rrcore and plugin
distributions with versions, torch, Python, the git commit), and loading one without its
plugins names the package and version to install."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from toy_helpers import toy_experiment

import rrcore
from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.contracts.provenance import PROVENANCE_FILE, git_commit, install_hint
from rrcore.contracts.registry import set_registry
from rrcore.training.loop import train

TOY = {"section": "model", "kind": "model", "plugin": "toy", "distribution": "rr-toy", "version": "0.1.0"}


@pytest.fixture
def trained(toy_registry, tmp_path) -> Path:
    train(load_experiment(toy_experiment(tmp_path / "exp.toml", epochs=1)), run_dir=tmp_path / "run")
    return tmp_path / "run"


def _check(provenance: dict) -> None:
    assert provenance["distributions"] == {"rrcore": rrcore.__version__, "rr-toy": "0.1.0"}
    assert TOY in provenance["plugins"]
    assert {"section": "data", "kind": "dataset", "plugin": "toy", "distribution": "rr-toy", "version": "0.1.0"} in (
        provenance["plugins"]
    )
    assert provenance["torch"] == torch.__version__ and provenance["python"] == platform.python_version()
    commit = provenance["git_commit"]
    assert commit is None or len(commit) == 40 and int(commit, 16) >= 0


def test_a_run_folder_records_its_provenance(trained) -> None:
    _check(json.loads((trained / PROVENANCE_FILE).read_text()))


def test_export_json_names_rrcore_and_the_model_plugins_distribution_with_versions(trained, tmp_path) -> None:
    result = CliRunner().invoke(main, ["export", str(trained), str(tmp_path / "export")])
    assert result.exit_code == 0, result.output
    _check(json.loads((tmp_path / "export" / "export.json").read_text())["provenance"])


def _without_plugins(monkeypatch, *args: str) -> str:
    """``rr ARGS`` with no external plugin loaded; its one line of error."""
    monkeypatch.setenv("RR_LOAD_PLUGINS", "")
    set_registry(None)
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rr: error: "), result.output
    return lines[0]


def test_loading_an_export_or_run_without_its_plugin_names_the_package_and_version(
    trained, tmp_path, monkeypatch
) -> None:
    assert CliRunner().invoke(main, ["export", str(trained), str(tmp_path / "export")]).exit_code == 0
    for source in (tmp_path / "export", trained):
        line = _without_plugins(monkeypatch, "eval", str(source), "--output", str(tmp_path / "eval"))
        assert "unknown dataset plugin 'toy'" in line
        # rr-toy is on the path here, so the line says it is installed but not loaded.
        assert "made with rr-toy 0.1.0 (dataset 'toy', model 'toy')" in line and "RR_LOAD_PLUGINS" in line
    line = _without_plugins(monkeypatch, "solve", str(tmp_path / "export"), "1 2 3")
    assert "made with rr-toy 0.1.0" in line


def test_a_package_that_is_not_installed_is_named_with_how_to_install_it(toy_registry, tmp_path) -> None:
    gone = {**TOY, "plugin": "grurefiner", "distribution": "rr-grurefiner", "version": "1.2.3"}
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps({"plugins": [TOY, gone]}))
    hint = install_hint(tmp_path, toy_registry)
    assert hint == "made with rr-grurefiner 1.2.3 (model 'grurefiner'): pip install 'rr-grurefiner==1.2.3'"
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps({"plugins": [TOY]}))
    assert install_hint(tmp_path, toy_registry) is None  # everything it was made with is loaded
    (tmp_path / PROVENANCE_FILE).write_text("{not json")
    assert install_hint(tmp_path, toy_registry) is None  # a damaged record gives no hint, not an error


def test_git_commit_is_none_outside_a_checkout_or_without_git(tmp_path, monkeypatch) -> None:
    assert git_commit(tmp_path) is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git to run
    assert git_commit() is None
