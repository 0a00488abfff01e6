"""rr export: weights to share as safetensors, loaded by rr eval, rr solve and [train] init_from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file as load_safetensors
from toy_helpers import toy_experiment

from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.training.checkpoint import load_checkpoint
from rrcore.training.loop import Trainer, train


def _latest(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()


@pytest.fixture
def trained(toy_registry, tmp_path) -> Path:
    """A toy run with an EMA (so the exported weights differ from the trained ones)."""
    path = toy_experiment(tmp_path / "exp.toml", epochs=1, ema="true", ema_rate=0.5)
    train(load_experiment(path), run_dir=tmp_path / "run")
    return tmp_path / "run"


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_export_writes_the_ema_weights_config_and_metadata(trained, tmp_path):
    result = _run("export", str(trained), str(tmp_path / "export"))
    assert result.exit_code == 0, result.output
    folder = tmp_path / "export"
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.toml",
        "dataset.json",
        "export.json",
        "model.safetensors",
    ]
    info = json.loads((folder / "export.json").read_text())
    assert info["model"] == "toy" and info["step"] == 4 and info["weights"] == "ema"
    assert Path(info["source"]) == _latest(trained).resolve()
    assert (folder / "config.toml").read_text() == (trained / "config.toml").read_text()
    assert (folder / "dataset.json").read_text() == (trained / "dataset.json").read_text()
    shared, _, _ = load_checkpoint(_latest(trained))
    weights = load_safetensors(folder / "model.safetensors")
    # The toy model registers its puzzle embedding twice: stored once, under its first name.
    assert "input.puzzle_emb.weights" in weights and "puzzle_emb.weights" not in weights
    assert torch.equal(weights["input.puzzle_emb.weights"], shared["model"]["input.puzzle_emb.weights"])
    for name, tensor in shared["ema"].items():
        assert torch.equal(weights[name], tensor), name
    assert not torch.equal(weights["block.mlp.down_proj.weight"], shared["model"]["block.mlp.down_proj.weight"])
    assert info["parameters"] == sum(t.numel() for t in shared["ema"].values())


def test_rr_eval_on_an_export_gives_the_checkpoints_metrics(trained, tmp_path):
    assert _run("export", str(trained), str(tmp_path / "export")).exit_code == 0
    on_checkpoint = _run("eval", str(trained), "--output", str(tmp_path / "a"))
    on_export = _run("eval", str(tmp_path / "export"), "--output", str(tmp_path / "b"))
    assert on_checkpoint.exit_code == 0 and on_export.exit_code == 0, on_export.output
    a = json.loads((tmp_path / "a" / "exact" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "exact" / "results.json").read_text())
    assert a == b and a["count"] == 16
    # Every puzzle's answer, not only the totals.
    rows = [(tmp_path / d / "predictions.jsonl").read_text() for d in ("a", "b")]
    assert rows[0] == rows[1]


def test_loading_an_export_never_unpickles(trained, tmp_path, monkeypatch):
    assert _run("export", str(trained), str(tmp_path / "export")).exit_code == 0

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called while loading an export")

    monkeypatch.setattr(torch, "load", refuse)
    result = _run("eval", str(tmp_path / "export"), "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    experiment = load_experiment(tmp_path / "exp.toml", [f"train.init_from={tmp_path / 'export'}"])
    Trainer(experiment, run_dir=tmp_path / "tuned")
    # ...while a checkpoint does go through torch.load, so the patch is in force.
    assert _run("eval", str(trained), "--output", str(tmp_path / "out2")).exit_code == 2  # bad input, as in rr solve


def test_fine_tuning_starts_from_the_exported_weights(trained, tmp_path):
    assert _run("export", str(trained), str(tmp_path / "export")).exit_code == 0
    weights = load_safetensors(tmp_path / "export" / "model.safetensors")
    experiment = load_experiment(tmp_path / "exp.toml", [f"train.init_from={tmp_path / 'export'}"])
    tuned = Trainer(experiment, run_dir=tmp_path / "tuned")
    assert tuned.step == 0
    state = tuned.run.model.state_dict()
    assert torch.equal(state["block.mlp.down_proj.weight"], weights["block.mlp.down_proj.weight"])
    # Both names of the tied puzzle-embedding table hold the one stored tensor.
    assert torch.equal(state["input.puzzle_emb.weights"], weights["input.puzzle_emb.weights"])
    assert torch.equal(state["puzzle_emb.weights"], weights["input.puzzle_emb.weights"])
    # The EMA restarts from the loaded weights, and the optimizers have no state yet.
    assert all(torch.equal(s, p) for s, p in zip(tuned.run.ema.shadow, tuned.run.model.parameters()))
    assert tuned.run.optimizers.state_dict()["model"]["state"] == {}
    fresh = Trainer(load_experiment(tmp_path / "exp.toml"), run_dir=tmp_path / "fresh")
    assert not torch.equal(
        fresh.run.model.state_dict()["block.mlp.down_proj.weight"], weights["block.mlp.down_proj.weight"]
    )


def test_fine_tuning_keeps_the_ema_start_step(trained, tmp_path):
    assert _run("export", str(trained), str(tmp_path / "export")).exit_code == 0
    overrides = [f"train.init_from={tmp_path / 'export'}", "train.ema_start_step=3"]
    tuned = Trainer(load_experiment(tmp_path / "exp.toml", overrides), run_dir=tmp_path / "tuned")
    assert tuned.run.ema.start_step == 3 and tuned.run.ema.rate == 0.5


def test_export_into_a_folder_that_holds_files_is_refused_in_one_line(trained, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    result = _run("export", str(trained), str(tmp_path / "taken"))
    assert result.exit_code == 2
    assert result.output == f"rr: error: {tmp_path / 'taken'}: not empty; rr export writes into a new or empty folder\n"
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    result = _run("export", str(tmp_path / "nothing"), str(tmp_path / "out"))
    assert result.exit_code == 2 and "not a checkpoint (no state.pt)" in result.output
    (tmp_path / "empty").mkdir()
    assert _run("export", str(trained), str(tmp_path / "empty")).exit_code == 0


def test_init_from_must_name_an_export_or_a_checkpoint(trained, tmp_path):
    for value, problem in (
        (tmp_path / "missing", "no such file or folder"),
        (tmp_path, "neither an export (no export.json and model.safetensors) nor a checkpoint"),
    ):
        result = _run(
            "run", str(tmp_path / "exp.toml"), "--set", f"train.init_from={value}", "--run-dir", str(tmp_path / "tuned")
        )
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"rr: error: {tmp_path / 'exp.toml'}: train.init_from = '{value}': {problem}")
        assert len(result.output.splitlines()) == 1
        assert not (tmp_path / "tuned").exists()
        assert _run("validate", str(tmp_path / "exp.toml"), "--set", f"train.init_from={value}").exit_code == 2
    # A checkpoint works as well as an export.
    result = _run("validate", str(tmp_path / "exp.toml"), "--set", f"train.init_from={trained}")
    assert result.exit_code == 0 and f'init_from = "{trained}"' in result.output


def test_a_model_of_another_shape_is_refused_naming_the_parameter(trained, tmp_path):
    assert _run("export", str(trained), str(tmp_path / "export")).exit_code == 0
    result = _run(
        "run",
        str(tmp_path / "exp.toml"),
        "--set",
        f"train.init_from={tmp_path / 'export'}",
        "--set",
        "model.hidden_size=32",
        "--run-dir",
        str(tmp_path / "tuned"),
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith(
        f"rr: error: {tmp_path / 'exp.toml'}: train.init_from = '{tmp_path / 'export'}': "
        "parameter 'z_init' has shape (16,) there, (32,) in this model"
    )
    assert len(result.output.splitlines()) == 1
    # rr eval of the export with a different [model] says the same of the file.
    result = _run("eval", str(tmp_path / "export"), "--set", "model.hidden_size=32")
    assert result.exit_code == 2
    assert f"rr: error: {tmp_path / 'export' / 'model.safetensors'}: parameter 'z_init'" in result.output
