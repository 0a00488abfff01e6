"""Experiment files: every error names file, key path and what would be right."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.tomlfile import dumps_toml, tomllib


def _error(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as error:
        load_experiment(path, list(overrides))
    return str(error.value)


def test_loads_and_structures_plugin_sections(toy_registry, tmp_path):
    experiment = load_experiment(toy_experiment(tmp_path / "exp.toml"))
    assert experiment.model.plugin == "toy" and experiment.model.config.hidden_size == 16
    assert experiment.loss.plugin == "act"  # default
    assert experiment.optimizer.plugin == "adamw"
    assert [e.plugin for e in experiment.evaluators] == ["exact"]
    assert experiment.train.global_batch_size == 8


def test_unknown_key_names_file_path_and_nearest(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml")
    path.write_text(path.read_text().replace('plugin = "toy"\n\n[act]', 'plugin = "toy"\nhiden_size = 3\n\n[act]'))
    message = _error(path)
    assert str(path) in message and "model.hiden_size" in message and "did you mean 'hidden_size'" in message


def test_unknown_key_in_core_section(toy_registry, tmp_path):
    message = _error(toy_experiment(tmp_path / "exp.toml", global_batch_sise=4))
    assert "train.global_batch_sise" in message and "'global_batch_size'" in message


def test_wrong_type_names_expected_type(toy_registry, tmp_path):
    message = _error(toy_experiment(tmp_path / "exp.toml", lr='"fast"'))
    assert str(tmp_path / "exp.toml") in message and "train.lr" in message and "expected float" in message
    message = _error(toy_experiment(tmp_path / "exp.toml"), ["model.cycles=2.5"])
    assert "model.cycles" in message and "expected int" in message
    message = _error(toy_experiment(tmp_path / "exp.toml", compile='"sometimes"'))
    assert "train.compile" in message and "'auto'" in message


def test_unknown_plugin_lists_available(toy_registry, tmp_path):
    message = _error(toy_experiment(tmp_path / "exp.toml"), ["model.plugin=tmr"])
    assert "model.plugin" in message and "available: toy" in message
    message = _error(toy_experiment(tmp_path / "exp.toml"), ["optimizer.plugin=adam"])
    assert "adam_atan2" in message and "adamw" in message


def test_unknown_section_and_missing_section(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", extra="[trian]\nlr = 1.0\n")
    assert "trian: unknown section; did you mean 'train'" in _error(path)
    path = toy_experiment(tmp_path / "exp.toml")
    path.write_text(path.read_text().replace('[model]\nplugin = "toy"\n', ""))
    assert "[model] section is missing" in _error(path)


def test_bad_toml_and_missing_file(toy_registry, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[run\nname = 1\n")
    assert str(path) in _error(path) and "not valid TOML" in _error(path)
    assert "no such experiment file" in _error(tmp_path / "absent.toml")


def test_overrides_reach_core_plugin_and_list_sections(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml")
    experiment = load_experiment(
        path, ["train.lr=3e-4", "model.cycles=5", "run.name=other", "evaluators.0.plugin=exact", "act.halt_max_steps=7"]
    )
    assert experiment.train.lr == 3e-4 and experiment.model.config.cycles == 5
    assert experiment.run.name == "other" and experiment.act.halt_max_steps == 7
    assert "--set" in _error(path, ["train.lr"])


def test_validation_in_config_classes(toy_registry, tmp_path):
    message = _error(toy_experiment(tmp_path / "exp.toml", global_batch_size=6, grad_accum_steps=4))
    assert "train" in message and "grad_accum_steps" in message


def test_resolved_config_round_trips(toy_registry, tmp_path):
    experiment = load_experiment(toy_experiment(tmp_path / "exp.toml"), ["train.lr=0.5"])
    text = dumps_toml(experiment.to_dict())
    (tmp_path / "resolved.toml").write_text(text)
    again = load_experiment(tmp_path / "resolved.toml")
    assert again.to_dict() == experiment.to_dict()
    assert tomllib.loads(text)["train"]["lr"] == 0.5


def test_validate_command(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml")
    result = CliRunner().invoke(main, ["validate", str(path), "--set", "train.lr=0.25"])
    assert result.exit_code == 0, result.output
    resolved = tomllib.loads(result.output)
    assert resolved["train"]["lr"] == 0.25 and resolved["loss"]["plugin"] == "act"
    assert resolved["act"]["halt_max_steps"] == 3
    bad = CliRunner().invoke(main, ["validate", str(path), "--set", "train.lrr=1"])
    assert bad.exit_code == 2 and "train.lrr" in bad.output and "did you mean 'lr'" in bad.output


def test_sign_sgd_settings_live_with_the_optimizer_and_old_keys_still_load(toy_registry, tmp_path, capsys):
    path = toy_experiment(tmp_path / "exp.toml", extra="\n[optimizer.puzzle_emb]\nlr = 0.003\n")
    experiment = load_experiment(path, ["optimizer.puzzle_emb.weight_decay=0.5"])
    assert (experiment.optimizer.puzzle_emb.lr, experiment.optimizer.puzzle_emb.weight_decay) == (0.003, 0.5)
    assert "lr = 0.003" in dumps_toml(experiment.to_dict()).split("[optimizer.puzzle_emb]")[1]

    old = toy_experiment(tmp_path / "old.toml", puzzle_emb_lr=0.02, puzzle_emb_weight_decay=0.3)
    experiment = load_experiment(old)
    assert (experiment.optimizer.puzzle_emb.lr, experiment.optimizer.puzzle_emb.weight_decay) == (0.02, 0.3)
    assert experiment.optimizer.plugin == "adamw"
    assert f"rr: note: {old}: train.puzzle_emb_lr is now optimizer.puzzle_emb.lr" in capsys.readouterr().err

    both = CliRunner().invoke(main, ["validate", str(old), "--set", "optimizer.puzzle_emb.lr=0.1"])
    assert both.exit_code == 2
    assert (
        f"rr: error: {old}: train.puzzle_emb_lr: moved to optimizer.puzzle_emb.lr, which is also set; "
        f"keep only optimizer.puzzle_emb.lr"
    ) in both.output
    message = _error(path, ["optimizer.puzzle_emb.lrr=1"])
    assert "optimizer.puzzle_emb.lrr: unknown key; did you mean 'lr'?" in message


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=-1", "train.lr = -1: must be in (0, 1e+06]"),
        ("train.max_steps=-5", "train.max_steps = -5: must be >= 0"),
        ("train.epochs=0", "train.epochs = 0: must be > 0"),
        ("train.ema_rate=1.0", "train.ema_rate = 1: must be in [0, 1)"),
        ("train.betas=[0.9, 1.5]", "train.betas = [0.9, 1.5]: must be numbers each in [0, 1)"),
        ("train.global_batch_size=0", "train.global_batch_size = 0: must be >= 1"),
        ("act.halt_exploration_prob=1.5", "act.halt_exploration_prob = 1.5: must be in [0, 1]"),
        ("optimizer.eps=0", "optimizer.eps = 0: must be in (0, 1e+06]"),
        ("loss.q_loss_weight=-0.5", "loss.q_loss_weight = -0.5: must be >= 0"),
    ],
)
def test_out_of_range_values_are_refused_at_load_naming_file_key_and_range(toy_registry, tmp_path, override, message):
    path = toy_experiment(tmp_path / "exp.toml")
    result = CliRunner().invoke(main, ["run", str(path), "--set", override])
    assert result.exit_code == 2
    assert result.output.strip() == f"rr: error: {path}: {message}"
    assert not (tmp_path / "runs").exists()  # refused before anything ran


def test_non_finite_numbers_are_refused(toy_registry, tmp_path):
    assert "train.lr = nan: must be in (0, 1e+06]" in _error(toy_experiment(tmp_path / "exp.toml", lr="nan"))
    assert "train.grad_clip = inf" in _error(toy_experiment(tmp_path / "exp.toml", grad_clip="inf"))


def test_model_plugin_configs_check_their_ranges(tmp_path):
    from rr_hrm.hrm import HRMConfig
    from rr_trm.trm import TRMConfig
    from rr_urm.urm import URMConfig

    from rrcore.contracts.structure import structure

    for cls, values, message in [
        (TRMConfig, {"hidden_size": 0}, "model.hidden_size = 0: must be >= 1"),
        (HRMConfig, {"H_cycles": 0}, "model.H_cycles = 0: must be >= 1"),
        (URMConfig, {"expansion": -2.0}, "model.expansion = -2: must be > 0"),
    ]:
        with pytest.raises(ConfigError, match="^exp.toml: " + message.replace(".", r"\.")):
            structure(values, cls, "exp.toml", "model")
