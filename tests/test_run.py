"""A run built once: what rr eval builds, evaluators per run, checkpoint parts, metric means."""

from __future__ import annotations

import json
import types
from pathlib import Path

import attrs
import pytest
import torch
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore import hookimpl
from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.contracts.errors import CheckpointError
from rrcore.contracts.specs import EvaluatorSpec
from rrcore.model.metrics import PER_EXAMPLE, PER_HALTED, UndeclaredMetricError, reduce_metrics
from rrcore.tools.evaluate import evaluate_checkpoint
from rrcore.training import build as run_module
from rrcore.training.checkpoint import load_checkpoint
from rrcore.training.loop import Trainer, train


def _latest(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()


def test_rr_eval_builds_no_optimizers(toy_registry, tmp_path, monkeypatch):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    train(load_experiment(path), run_dir=tmp_path / "run")

    def refuse(*args, **kwargs):
        raise AssertionError("rr eval built the optimizers")

    monkeypatch.setattr(run_module, "build_optimizers", refuse)
    checkpoint = _latest(tmp_path / "run")
    results = evaluate_checkpoint(load_experiment(path), checkpoint, tmp_path / "eval")
    assert results["exact/count"] == 16
    assert json.loads((tmp_path / "eval" / "exact" / "results.json").read_text())["count"] == 16


@attrs.define
class CountingConfig:
    """No options."""


def _counting_plugin() -> types.ModuleType:
    """An evaluator plugin that counts how often it is built and how many passes it scores."""
    plugin = types.ModuleType("counting_plugin")
    plugin.built = 0
    plugin.passes: list[Path] = []

    class Counting:
        def __init__(self, config, context) -> None:
            plugin.built += 1

        def begin_eval(self, output_dir: Path) -> None:
            plugin.passes.append(output_dir)

        def update_batch(self, batch, outputs) -> None:
            pass

        def result(self) -> dict[str, float]:
            return {"passes": float(len(plugin.passes))}

    @hookimpl
    def rr_register_evaluators():
        return [EvaluatorSpec(name="counting", factory=Counting, config_class=CountingConfig)]

    plugin.rr_register_evaluators = rr_register_evaluators
    return plugin


def test_evaluators_are_built_once_and_score_every_evaluation(toy_registry, tmp_path):
    plugin = _counting_plugin()
    toy_registry.register_module(plugin, name="counting", distribution="test", version="0")
    path = toy_experiment(
        tmp_path / "exp.toml", epochs=3, eval_interval=1, extra='[[evaluators]]\nplugin = "counting"\n'
    )
    result = train(load_experiment(path), run_dir=tmp_path / "run")
    assert plugin.built == 1
    # After epochs 1 and 2 (4 steps each), and at the end.
    assert plugin.passes == [tmp_path / "run" / "eval" / f"step_{step}" / "counting" for step in (4, 8, 12)]
    assert result.eval_results["counting/passes"] == 3


def test_resume_without_a_part_the_run_needs_names_it(toy_registry, tmp_path):
    path = toy_experiment(tmp_path / "exp.toml", epochs=1)
    train(load_experiment(path), run_dir=tmp_path / "run")
    with pytest.raises(
        CheckpointError,
        match=r"state\.pt: no 'ema' state to restore; the file holds model, "
        r"optimizers \(its run kept no EMA: resume with train.ema = false\)",
    ):
        Trainer(load_experiment(path, ["train.ema=true"]), run_dir=tmp_path / "run", resume="latest")

    state = _latest(tmp_path / "run") / "state.pt"
    saved = torch.load(state, weights_only=True)
    del saved["optimizers"]
    torch.save(saved, state)
    result = CliRunner().invoke(main, ["run", str(path), "--run-dir", str(tmp_path / "run"), "--resume", "latest"])
    assert result.exit_code == 1
    assert f"rr: error: {state}: no 'optimizers' state to restore; the file holds model" in result.output


def _rewrite_in_main_layout(checkpoint: Path) -> None:
    """Turn a checkpoint into the layout main wrote before named parts: the optimizers a
    list, each rank's RNG states flat beside its carries, sign-SGD's keys in [train]."""
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    state["optimizers"] = [state["optimizers"]["model"], state["optimizers"]["puzzle_emb"]]
    torch.save(state, checkpoint / "state.pt")
    rank = torch.load(checkpoint / "rank0.pt", weights_only=True)
    torch.save(
        {
            "torch_rng": rank["rng"]["torch"],
            "cuda_rng": None,
            "exploration_rng": rank["rng"]["exploration"],
            "carries": rank["carries"],
        },
        checkpoint / "rank0.pt",
    )
    config = (checkpoint / "config.toml").read_text()
    table = "\n[optimizer.puzzle_emb]\nlr = 0.01\nweight_decay = 0.1\n"
    assert table in config
    config = config.replace(table, "").replace(
        "\n[train]\n", "\n[train]\npuzzle_emb_lr = 0.01\npuzzle_emb_weight_decay = 0.1\n"
    )
    (checkpoint / "config.toml").write_text(config)


def test_a_checkpoint_in_mains_layout_resumes_bit_exactly_and_evaluates(toy_registry, tmp_path):
    # A constant rate after warm-up: stopping at max_steps changes no step's learning rate.
    path = toy_experiment(tmp_path / "exp.toml", epochs=3, ema="true")
    train(load_experiment(path), run_dir=tmp_path / "straight")
    stopped = load_experiment(path, ["train.max_steps=6"])
    train(stopped, run_dir=tmp_path / "old")
    checkpoint = _latest(tmp_path / "old")
    _rewrite_in_main_layout(checkpoint)

    resumed = train(load_experiment(path), run_dir=tmp_path / "old", resume=str(checkpoint))
    assert resumed.status == "finished" and resumed.step == 12
    a = load_checkpoint(_latest(tmp_path / "straight"))[0]
    b = load_checkpoint(_latest(tmp_path / "old"))[0]
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)

    # rr eval reads the old checkpoint's config.toml, sign-SGD's keys where they were.
    result = CliRunner().invoke(main, ["eval", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert "train.puzzle_emb_lr is now optimizer.puzzle_emb.lr" in result.output


def test_metric_means_follow_the_declared_reduction():
    sums = {
        "lm_loss": torch.tensor(8.0),
        "accuracy": torch.tensor(3.0),
        "count": torch.tensor(2.0),
        "loss": torch.tensor(12.0),
    }
    means = reduce_metrics(
        sums, {"lm_loss": PER_EXAMPLE, "accuracy": PER_HALTED}, steps=2, global_batch_size=4, prefix="train"
    )
    # 8 rows stepped (2 steps x 4), 2 of them halted.
    assert means == {"train/lm_loss": 1.0, "train/accuracy": 1.5, "train/loss": 1.5, "train/halted": 0.25}
    with pytest.raises(UndeclaredMetricError, match="metric 'steps' but declares no reduction"):
        reduce_metrics(
            {**sums, "steps": torch.tensor(5.0)},
            {"lm_loss": PER_EXAMPLE, "accuracy": PER_HALTED},
            steps=2,
            global_batch_size=4,
            prefix="train",
        )
