"""Fixtures: the toy plugin installed as a real distribution (entry point ``rr``)."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from rrcore.registry import load_registry, set_registry

HERE = Path(__file__).parent


def make_distribution(site: Path, dist_name: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
    """Write a minimal installed distribution (dist-info + modules) into ``site``."""
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)
    info = site / f"{dist_name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[rr]\n{lines}\n")


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
    yield {**os.environ, "PYTHONPATH": os.pathsep.join([str(toy_site), os.environ.get("PYTHONPATH", "")]),
           "RR_LOAD_PLUGINS": "toy", "RR_CACHE_DIR": str(tmp_path / "cache")}
    set_registry(None)


@pytest.fixture
def toy_registry(toy_env):
    registry = load_registry()
    set_registry(registry)
    return registry


def toy_experiment(path: Path, extra: str = "", **train) -> Path:
    """Write a small toy experiment; ``train`` keys override the [train] section."""
    values = dict(global_batch_size=8, epochs=4, lr=3e-3, lr_warmup_steps=2, weight_decay=0.01,
                  puzzle_emb_lr=1e-2, log_interval=2, compile='"off"')
    values.update(train)
    train_lines = "\n".join(f"{k} = {v}" for k, v in values.items())
    path.write_text(textwrap.dedent(f"""\
        [run]
        name = "toy"
        seed = 3
        out_dir = "{path.parent / 'runs'}"
        device = "cpu"

        [data]
        plugin = "toy"

        [model]
        plugin = "toy"

        [act]
        halt_max_steps = 3
        halt_exploration_prob = 0.2

        [optimizer]
        plugin = "adamw"

        [train]
        """) + train_lines + "\n" + textwrap.dedent(extra))
    return path


@pytest.fixture
def fresh_dir(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)
