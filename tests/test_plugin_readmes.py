"""Each bundled plugin's README lists every key of the config classes it registers, with its
default, and has a minimal example for each component that loads as the experiment would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rrcore.contracts.errors import ConfigError
from rrcore.contracts.registry import get_registry
from rrcore.contracts.structure import structure
from rrcore.contracts.tomlfile import tomllib
from rrcore.testing import check_documented_keys

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("rr-*/pyproject.toml"))
SECTIONS = {
    "model": "model",
    "data": "dataset",
    "loss": "loss_head",
    "optimizer": "optimizer",
    "evaluators": "evaluator",
    "loggers": "logger",
}
"""Experiment sections whose tables name a component (``plugin = ...``), and its registry kind."""


def _distribution(folder: Path) -> str:
    return tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]


def _component_tables(readme: Path) -> list[tuple[str, str, dict]]:
    """(section, kind, table) of every table naming a component in the README's ```toml blocks."""
    found = []
    for block in re.findall(r"```toml\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.S):
        document = tomllib.loads(block)  # a README example must at least be TOML
        for section, kind in SECTIONS.items():
            tables = document.get(section, [])
            for table in tables if isinstance(tables, list) else [tables]:
                if "plugin" in table:
                    found.append((section, kind, table))
    return found


@pytest.mark.parametrize("folder", PLUGINS, ids=[p.name for p in PLUGINS])
def test_the_readme_lists_every_key_with_its_default(folder):
    assert (folder / "README.md").is_file(), f"{folder.name} has no README.md"
    check_documented_keys(folder / "README.md", _distribution(folder))


@pytest.mark.parametrize("folder", PLUGINS, ids=[p.name for p in PLUGINS])
def test_the_readme_has_an_example_of_each_component_that_loads(folder):
    """Every component the plugin registers with a config appears in a ```toml example as
    ``plugin = "NAME"`` in its section, and the example's keys load strictly (an unknown or
    mistyped key fails as it would in an experiment)."""
    registry = get_registry()
    distribution = _distribution(folder)
    ours = {
        (spec.kind, name): spec
        for kind, specs in registry.components.items()
        for name, spec in specs.items()
        if spec.distribution == distribution and spec.config_class is not None
    }
    shown = set()
    for section, kind, table in _component_tables(folder / "README.md"):
        spec = ours.get((kind, table["plugin"]))
        if spec is None:
            continue  # another distribution's component (e.g. a task README's model)
        values = {key: value for key, value in table.items() if key != "plugin" and not isinstance(value, dict)}
        try:
            structure(values, spec.config_class, f"{folder.name}/README.md", section)
        except ConfigError as error:
            pytest.fail(f"the README's [{section}] example of {table['plugin']!r} does not load: {error}")
        shown.add((kind, table["plugin"]))
    missing = sorted(f"[{kind}] {name}" for kind, name in set(ours) - shown)
    assert not missing, f"{folder.name}/README.md has no ```toml example with plugin = NAME for {missing}"
