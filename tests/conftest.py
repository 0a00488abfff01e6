"""Fixtures: the toy plugin installed as a real distribution (entry point ``rr``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    # torch's inductor imports setuptools at its first CPU compile, and setuptools' distutils
    # shim asserts if the standard library's distutils was imported before it. One CI dry run
    # failed so in tests/test_nn.py (not reproduced since); importing setuptools first lets the
    # shim take its place before anything else can.
    import setuptools  # noqa: F401
except ImportError:  # nothing to put first
    pass
from toy_helpers import make_distribution

from rrcore.contracts.registry import load_registry, set_registry

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def toy_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    make_distribution(site, "rr-toy", {"rr_toy": (HERE / "plugins" / "rr_toy.py").read_text()}, {"toy": "rr_toy"})
    return site


@pytest.fixture
def toy_env(toy_site, tmp_path, monkeypatch) -> dict[str, str]:
    """Only the toy plugin loads (besides the core's built-ins); caches go to tmp."""
    monkeypatch.syspath_prepend(str(toy_site))
    monkeypatch.setenv("RR_LOAD_PLUGINS", "toy")
    monkeypatch.setenv("RR_CACHE_DIR", str(tmp_path / "cache"))
    set_registry(None)
    yield {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(toy_site), os.environ.get("PYTHONPATH", "")]),
        "RR_LOAD_PLUGINS": "toy",
        "RR_CACHE_DIR": str(tmp_path / "cache"),
    }
    set_registry(None)


@pytest.fixture
def toy_registry(toy_env):
    registry = load_registry()
    set_registry(registry)
    return registry


@pytest.fixture
def bundled_registry(tmp_path, monkeypatch):
    """The installed plugins (rr-trm, rr-hrm, rr-urm, rr-sudoku), data cached in tmp."""
    import torch._dynamo

    monkeypatch.delenv("RR_LOAD_PLUGINS", raising=False)
    monkeypatch.setenv("RR_CACHE_DIR", str(tmp_path / "cache"))
    # Each test builds new modules; dynamo's per-function cache would otherwise fill up
    # (8 entries) and silently fall back to eager, making compile checks vacuous.
    torch._dynamo.reset()
    set_registry(None)
    registry = load_registry()
    if not {"trm", "hrm", "urm"} <= {s.name for s in registry.all_components() if s.kind == "model"}:
        pytest.skip("the bundled model plugins are not installed")
    set_registry(registry)
    yield registry
    set_registry(None)
    torch._dynamo.reset()
