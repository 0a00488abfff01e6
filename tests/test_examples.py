"""Every ``examples/*.toml`` stays a valid experiment for the installed plugins.

Validation only: resolving an experiment structures its sections into the plugins'
config classes and builds nothing, so the whole file runs in about a second.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from rrcore.contracts.config import LIST_SECTIONS, PLUGIN_SECTIONS, load_experiment, load_raw, resolve
from rrcore.contracts.registry import Registry, load_registry
from rrcore.contracts.tomlfile import dumps_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.toml"))


@pytest.fixture(scope="module")
def registry() -> Registry:
    # Every installed plugin: RR_LOAD_PLUGINS / RR_DISABLE_PLUGINS in the caller's
    # environment would hide some, and their examples would be skipped, not failed.
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RR_LOAD_PLUGINS", raising=False)
        patch.delenv("RR_DISABLE_PLUGINS", raising=False)
        return load_registry()


def missing_plugins(raw: dict[str, Any], registry: Registry) -> list[str]:
    """``"<kind> <name>"`` for each component the raw experiment names that no loaded plugin registered."""
    named = [
        (kind, raw[section].get("plugin"))
        for section, kind in PLUGIN_SECTIONS.items()
        if isinstance(raw.get(section), dict)
    ]
    named += [
        (kind, entry.get("plugin"))
        for section, kind in LIST_SECTIONS.items()
        for entry in raw.get(section, [])
        if isinstance(entry, dict)
    ]
    return [
        f"{kind} {name!r}" for kind, name in named if isinstance(name, str) and name not in registry.components[kind]
    ]


def test_examples_are_found() -> None:
    # A moved folder must not turn the parametrised test below into zero tests that pass.
    assert len(EXAMPLES) >= 10, f"expected the example experiments in {EXAMPLES_DIR}, found {EXAMPLES}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_resolves_and_round_trips(path: Path, registry: Registry) -> None:
    raw = load_raw(path)  # with its base files
    missing = missing_plugins(raw, registry)
    if missing:
        pytest.skip(
            f"{path.name} needs plugins that are not installed: {', '.join(missing)} "
            f"(install them with pip install --no-deps -e plugins/rr-NAME)"
        )

    experiment = load_experiment(path, registry=registry)
    resolved = experiment.to_dict()

    # What `rr validate` prints and a run saves must load back to the same experiment.
    written = dumps_toml(resolved)
    again = resolve(tomllib.loads(written), registry, f"{path.name} (written back)").to_dict()
    assert again == resolved


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_header_matches_its_file(path: Path) -> None:
    # Copying an example to start another is the usual way to write one: a stale run
    # name would send two experiments into the same runs/<name>/ folder, and a stale
    # command in the header would run the wrong file.
    text = path.read_text()
    assert load_raw(path)["run"]["name"] == path.stem
    assert f"rr run examples/{path.name}" in text
