"""Packaging hygiene: each bundled plugin declares the rrcore versions it supports, as
``rr new-plugin`` writes them, and the installed set of packages has no broken requirement."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from rrcore.contracts.tomlfile import tomllib
from rrcore.tools.scaffold import PluginNames, project_metadata, render, rrcore_range

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted((ROOT / "plugins").glob("rr-*/pyproject.toml"))


def _project(pyproject: Path) -> dict:
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]


def _rrcore_requirements(pyproject: Path) -> list[str]:
    return [
        dep.replace(" ", "")
        for dep in _project(pyproject)["dependencies"]
        if dep.split(";")[0].strip().startswith("rrcore") and not dep.startswith("rrcore-")
    ]


def test_version_ranges_follow_the_release_line():
    # Before 1.0 a minor release may change the plugin contract; after it, a major one.
    assert rrcore_range("0.1.0") == ">=0.1,<0.2"
    assert rrcore_range("0.12.3") == ">=0.12,<0.13"
    assert rrcore_range("1.4.2") == ">=1.4,<2"
    assert rrcore_range("0.0.0") == ">=0.0,<0.1"


@pytest.mark.parametrize("pyproject", PLUGINS, ids=[p.parent.name for p in PLUGINS])
def test_each_plugin_declares_the_rrcore_versions_it_supports(pyproject):
    """A plugin that says only ``rrcore`` installs against an rrcore whose contract it no
    longer meets; the range must hold the rrcore of this tree (bump both together)."""
    version = _project(ROOT / "pyproject.toml")["version"]
    assert _rrcore_requirements(pyproject) == [f"rrcore{rrcore_range(version)}"], (
        f"{pyproject.relative_to(ROOT)}: declare rrcore{rrcore_range(version)} (rrcore is {version})"
    )


def test_new_plugins_declare_the_same_range_as_the_bundled_ones(tmp_path):
    for kind in ("model", "task"):
        render(kind, PluginNames.of(f"pack{kind}"), tmp_path / kind)
        assert _rrcore_requirements(tmp_path / kind / "pyproject.toml") == _rrcore_requirements(PLUGINS[0])


SHARED = ("readme", "requires-python", "license", "license-files", "authors", "classifiers", "urls")


@pytest.mark.parametrize("pyproject", PLUGINS, ids=[p.parent.name for p in PLUGINS])
def test_each_plugin_declares_the_metadata_rrcore_does(pyproject):
    """What PyPI shows of each distribution (long description, licence, authors, classifiers,
    links, Python versions) is declared alike; .ci/packages checks the built wheels carry it."""
    core = _project(ROOT / "pyproject.toml")
    assert core["readme"] == "README.md" and core["license-files"] == ["LICENSE"]
    project = _project(pyproject)
    assert {key: project.get(key) for key in SHARED} == {key: core.get(key) for key in SHARED}
    assert (pyproject.parent / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()


def test_new_plugins_have_complete_metadata(tmp_path):
    core = _project(ROOT / "pyproject.toml")
    for kind in ("model", "task"):
        names = PluginNames.of(f"meta{kind}")
        render(
            kind, names, tmp_path / kind, project_metadata(names, "Ada Lovelace <ada@example.org>", "https://x.org/r")
        )
        project = _project(tmp_path / kind / "pyproject.toml")
        assert project["authors"] == [{"name": "Ada Lovelace", "email": "ada@example.org"}]
        assert project["urls"] == {"Repository": "https://x.org/r"}
        assert project["readme"] == "README.md" and project["license"] == core["license"]
        assert project["classifiers"] == core["classifiers"]
        assert project["requires-python"] == core["requires-python"]
        # Without --author and --url: a default author and no link, only a comment saying where it goes.
        render(kind, names, tmp_path / f"{kind}-plain")
        project = _project(tmp_path / f"{kind}-plain" / "pyproject.toml")
        assert project["authors"] == [{"name": f"The rr-meta{kind} authors"}] and project["urls"] == {}


@pytest.mark.skipif(importlib.util.find_spec("pip") is None, reason="pip is not installed in this environment")
def test_pip_check_is_clean():
    """After the README's install (and in any environment the tests run in) no installed
    package misses a requirement or has one in the wrong version."""
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pip check:\n{result.stdout}{result.stderr}"
