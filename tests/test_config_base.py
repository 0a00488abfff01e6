"""``base = "other.toml"``: an experiment file that starts from another."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_examples import missing_plugins
from toy_helpers import toy_experiment

from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment, load_raw, merge
from rrcore.contracts.registry import load_registry

ROOT = Path(__file__).resolve().parent.parent
FLAT = Path(__file__).resolve().parent / "data" / "examples-flat"
# The examples as they were before they used base files (copied from main at the rewrite).
REWRITTEN = sorted(FLAT.glob("*.toml"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_merge_tables_key_by_key_and_replaces_everything_else() -> None:
    base = {
        "train": {"lr": 1e-4, "betas": [0.9, 0.95], "epochs": 10},
        "model": {"plugin": "trm", "hidden_size": 64, "mlp_t": True},
        "evaluators": [{"plugin": "exact"}, {"plugin": "sudoku"}],
    }
    merged = merge(
        base,
        {
            "train": {"lr": 3e-4, "betas": [0.8, 0.9]},
            "model": {"hidden_size": 128},
            "evaluators": [{"plugin": "exact"}],
        },
    )
    assert merged["train"] == {"lr": 3e-4, "betas": [0.8, 0.9], "epochs": 10}  # list replaced whole
    assert merged["model"] == {"plugin": "trm", "hidden_size": 128, "mlp_t": True}
    assert merged["evaluators"] == [{"plugin": "exact"}]  # an array of tables is replaced whole
    assert base["train"]["lr"] == 1e-4  # the base is left alone

    # Another plugin: the base's keys belong to the other component, so the table is replaced.
    assert merge(base, {"model": {"plugin": "hrm", "H_layers": 2}})["model"] == {"plugin": "hrm", "H_layers": 2}
    # A base table naming no plugin (shared sizes) merges under any plugin.
    assert merge({"model": {"hidden_size": 64}}, {"model": {"plugin": "hrm"}})["model"] == {
        "hidden_size": 64,
        "plugin": "hrm",
    }


def test_base_chain_relative_to_each_file(toy_registry, tmp_path) -> None:
    (tmp_path / "shared").mkdir()
    toy_experiment(tmp_path / "shared" / "toy.toml")
    write(
        tmp_path / "shared" / "longer.toml",
        """\
        base = "toy.toml"
        [train]
        epochs = 9
        lr = 1e-3
        """,
    )
    path = write(
        tmp_path / "experiments" / "mine.toml",
        """\
        base = "../shared/longer.toml"
        [run]
        name = "mine"
        [train]
        lr = 5e-4
        """,
    )
    experiment = load_experiment(path)
    assert experiment.run.name == "mine" and experiment.run.seed == 3  # run merged, not replaced
    assert experiment.train.lr == 5e-4 and experiment.train.epochs == 9.0
    assert experiment.train.global_batch_size == 8 and experiment.model.plugin == "toy"
    assert "base" not in load_raw(path)
    # --set still applies last.
    assert load_experiment(path, ["train.lr=2e-4"]).train.lr == 2e-4


def _cli_error(path: Path) -> str:
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rr: error: "), result.output
    return lines[0]


def test_missing_base_is_one_line_naming_both_files(toy_registry, tmp_path) -> None:
    path = write(tmp_path / "exp.toml", 'base = "bases/nowhere.toml"\n')
    line = _cli_error(path)
    assert str(path) in line and "bases/nowhere.toml" in line and "no such file" in line


def test_base_cycle_is_one_line_naming_the_loop(toy_registry, tmp_path) -> None:
    write(tmp_path / "a.toml", 'base = "b.toml"\n')
    write(tmp_path / "b.toml", 'base = "c.toml"\n')
    write(tmp_path / "c.toml", 'base = "a.toml"\n')
    line = _cli_error(tmp_path / "a.toml")
    assert "cycle" in line and "a.toml -> " in line and "b.toml -> " in line and "c.toml -> " in line
    line = _cli_error(write(tmp_path / "self.toml", 'base = "self.toml"\n'))
    assert "cycle" in line and "self.toml" in line


def test_bad_base_value_and_bad_base_toml(toy_registry, tmp_path) -> None:
    line = _cli_error(write(tmp_path / "exp.toml", "base = 3\n"))
    assert "exp.toml: base: expected the path of another experiment file" in line
    write(tmp_path / "broken.toml", "[train\n")
    line = _cli_error(write(tmp_path / "exp.toml", 'base = "broken.toml"\n'))
    assert "broken.toml: not valid TOML" in line


def test_validate_prints_the_resolved_config(toy_registry, tmp_path) -> None:
    toy_experiment(tmp_path / "toy.toml")
    path = write(tmp_path / "exp.toml", 'base = "toy.toml"\n[train]\nlr = 7e-4\n')
    output = CliRunner().invoke(main, ["validate", str(path)]).output
    assert "base" not in output and "lr = 0.0007" in output and 'plugin = "toy"' in output


def test_rewritten_examples_are_found() -> None:
    assert len(REWRITTEN) >= 2, f"expected the pre-rewrite examples in {FLAT}"
    assert all((ROOT / "examples" / p.name).exists() for p in REWRITTEN)


@pytest.mark.parametrize("flat", REWRITTEN, ids=lambda p: p.name)
def test_rewritten_example_resolves_as_before(flat: Path, monkeypatch) -> None:
    monkeypatch.delenv("RR_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("RR_DISABLE_PLUGINS", raising=False)
    registry = load_registry()
    monkeypatch.setattr("rrcore.contracts.registry._registry", registry)  # and back to before after the test
    missing = missing_plugins(load_raw(flat), registry)
    if missing:
        pytest.skip(f"needs plugins that are not installed: {', '.join(missing)}")
    example = ROOT / "examples" / flat.name
    assert "base = " in example.read_text(), f"{example} no longer starts from a base file"
    monkeypatch.chdir(ROOT)  # `rr validate examples/X.toml`, as a user types it
    runner = CliRunner()
    before = runner.invoke(main, ["validate", str(flat)])
    after = runner.invoke(main, ["validate", f"examples/{flat.name}"])
    assert before.exit_code == 0 and after.exit_code == 0, before.output + after.output
    assert after.output == before.output


def test_a_model_that_is_not_trm_shaped_composes_with_the_4x4_base(tmp_path, monkeypatch) -> None:
    """The 4x4 base holds only the [model] keys every rrcore.model.model_kit model takes: a model
    with none of its own (tests/plugins/rr_onepass.py) validates and trains on it."""
    import importlib.util

    rr_sudoku_plugin = pytest.importorskip("rr_sudoku.plugin")
    from rrcore.training.loop import train

    spec = importlib.util.spec_from_file_location("rr_onepass", Path(__file__).parent / "plugins" / "rr_onepass.py")
    onepass = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(onepass)
    registry = load_registry(entry_point_group=None, extra_modules=[rr_sudoku_plugin, onepass])
    monkeypatch.setenv("RR_CACHE_DIR", str(tmp_path / "cache"))
    path = write(
        tmp_path / "onepass.toml",
        f"""\
        base = "{ROOT / "examples" / "base" / "sudoku4x4.toml"}"
        [run]
        device = "cpu"
        [model]
        plugin = "onepass"
        """,
    )
    experiment = load_experiment(path, ["train.max_steps=2", "data.train_size=64", "data.test_size=8"], registry)
    assert experiment.model.config.hidden_size == 64 and experiment.model.config.puzzle_emb_ndim == 0
    result = train(experiment, registry=registry, run_dir=tmp_path / "run")
    assert result.step == 2


def test_an_error_in_a_base_names_the_base_file(toy_registry, tmp_path) -> None:
    (tmp_path / "bases").mkdir()
    toy_experiment(tmp_path / "bases" / "toy.toml")
    base = write(tmp_path / "bases" / "shared.toml", 'base = "toy.toml"\n[model]\ncylces = 3\n')
    child = write(tmp_path / "mine.toml", 'base = "bases/shared.toml"\n[run]\nname = "mine"\n')
    line = _cli_error(child)
    assert f"{base} (a base of {child}): model.cylces: unknown key; did you mean 'cycles'?" in line
    # A key the child sets (or --set sets) is the child's, even when the base set it too.
    child.write_text('base = "bases/shared.toml"\n[model]\ncylces = 4\n')
    assert f"rr: error: {child}: model.cylces: unknown key" in _cli_error(child)
    child.write_text('base = "bases/shared.toml"\n[model]\nplugin = "toy"\n')
    result = CliRunner().invoke(main, ["validate", str(child), "--set", "model.cylces=5"])
    assert result.exit_code == 2 and f"rr: error: {child}: model.cylces" in result.output
    # A value out of range in the base names it too.
    write(base, 'base = "toy.toml"\n[train]\nlr = -1.0\n')
    assert f"{base} (a base of {child}): train.lr = -1: must be" in _cli_error(child)
