"""Plugin discovery: entry points, broken plugins, duplicate names, ``rr list-plugins``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from toy_helpers import make_distribution

from rrcore.cli.main import main
from rrcore.contracts import hookspecs
from rrcore.contracts.registry import RegistryError, UnknownPluginError, load_registry, set_registry

GOOD = """
from rrcore import hookimpl
from rrcore.contracts.specs import EvaluatorSpec
from rrcore.training.builtin import ExactEvaluator

@hookimpl
def rr_register_evaluators():
    return [EvaluatorSpec(name="{name}", factory=ExactEvaluator, description="{description}")]
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("RR_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("RR_DISABLE_PLUGINS", raising=False)
    set_registry(None)
    yield tmp_path
    set_registry(None)


def test_core_builtins_register_through_hooks():
    registry = load_registry(entry_point_group=None)
    assert {s.name for s in registry.all_components() if s.distribution == "rrcore"} >= {
        "act",
        "adam_atan2",
        "adamw",
        "jsonl",
        "wandb",
        "tensorboard",
        "exact",
        "built",
    }
    assert registry.plugins[0].distribution == "rrcore"
    assert "rr_register_loss_heads" in registry.plugins[0].hooks


def test_broken_plugin_is_reported_and_others_still_load(site, monkeypatch):
    make_distribution(site, "rr-broken", {"rr_broken": "import not_a_module_anywhere\n"}, {"broken": "rr_broken"})
    make_distribution(
        site, "rr-good", {"rr_good": GOOD.format(name="good_eval", description="fine")}, {"good": "rr_good"}
    )
    monkeypatch.setenv("RR_LOAD_PLUGINS", "broken,good")
    registry = load_registry()
    assert registry.get("evaluator", "good_eval").distribution == "rr-good"
    [failure] = registry.failures
    assert failure.name == "broken" and failure.distribution == "rr-broken"
    assert "not_a_module_anywhere" in failure.error

    result = CliRunner().invoke(main, ["list-plugins"])
    assert result.exit_code == 0
    assert "good_eval" in result.output and "rr-good" in result.output
    assert "failed to load plugin 'broken' (rr-broken" in result.output


def test_duplicate_names_name_both_distributions(site, monkeypatch):
    make_distribution(site, "rr-one", {"rr_one": GOOD.format(name="same", description="a")}, {"one": "rr_one"})
    make_distribution(site, "rr-two", {"rr_two": GOOD.format(name="same", description="b")}, {"two": "rr_two"})
    monkeypatch.setenv("RR_LOAD_PLUGINS", "one,two")
    registry = load_registry()  # the other names still work; the ambiguous one is refused
    assert registry.get("evaluator", "exact").distribution == "rrcore"
    with pytest.raises(RegistryError) as error:
        registry.get("evaluator", "same")
    assert "rr-one" in str(error.value) and "rr-two" in str(error.value) and "'same'" in str(error.value)
    # The way out the message suggests works.
    monkeypatch.setenv("RR_DISABLE_PLUGINS", "rr-two")
    assert load_registry().get("evaluator", "same").distribution == "rr-one"


def test_unknown_name_lists_available(toy_registry):
    with pytest.raises(UnknownPluginError) as error:
        toy_registry.get("model", "tyo")
    assert "available: toy" in str(error.value) and "did you mean 'toy'" in str(error.value)


def test_list_plugins_json(toy_registry):
    result = CliRunner().invoke(main, ["list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = {(c["kind"], c["name"]): c for c in data["components"]}
    assert rows[("model", "toy")]["distribution"] == "rr-toy"
    assert rows[("model", "toy")]["version"] == "0.1.0"
    assert rows[("loss_head", "act")]["distribution"] == "rrcore"
    assert any(p["name"] == "toy" and "rr_register_models" in p["hooks"] for p in data["plugins"])


def test_every_hook_is_documented():
    names = [n for n in dir(hookspecs) if n.startswith("rr_")]
    assert len(names) >= 10
    for name in names:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert len(doc.strip()) > 40, f"hook {name} needs a docstring saying when it is called and what it returns"


def test_cli_reports_duplicate_names_without_a_traceback(site, monkeypatch):
    make_distribution(site, "rr-one", {"rr_one": GOOD.format(name="same", description="a")}, {"one": "rr_one"})
    make_distribution(site, "rr-two", {"rr_two": GOOD.format(name="same", description="b")}, {"two": "rr_two"})
    monkeypatch.setenv("RR_LOAD_PLUGINS", "one,two")
    result = CliRunner().invoke(main, ["list-plugins"])
    assert result.exit_code == 2
    assert "rr: error: evaluator 'same' is registered twice" in result.output and "Traceback" not in result.output
