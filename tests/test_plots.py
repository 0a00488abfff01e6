"""Every run draws its curves; without matplotlib it says so once and trains anyway."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore.cli.main import main
from rrcore.tools import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_series_takes_the_last_value_of_a_step_and_skips_non_finite():
    rows = [
        {"step": 2, "train/loss": 3.0},
        {"step": 4, "train/loss": "nan"},
        {"step": 2, "train/loss": 2.5},
        {"step": 4, "exact/exact_accuracy": 0.5},
        {"step": 4, "exact/exact_accuracy/rating_0-0": 0.25},
    ]
    loss = next(c for c in plots.CURVES if c.name == "loss")
    exact = next(c for c in plots.CURVES if c.name == "exact_accuracy")
    assert plots.series(rows, loss) == {"train/loss": ([2], [2.5])}
    assert plots.series(rows, exact) == {"exact/exact_accuracy": ([4], [0.5])}  # buckets stay in the report


def test_run_leaves_curve_pngs_redrawn_at_each_evaluation(toy_registry, tmp_path):
    pytest.importorskip("matplotlib")
    path = toy_experiment(tmp_path / "exp.toml", epochs=2, eval_interval=1)
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "toy" / "plots"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["accuracy.png", "act_steps.png", "exact_accuracy.png", "loss.png", "lr.png"]
    for png in folder.iterdir():
        assert png.read_bytes().startswith(PNG_SIGNATURE) and png.stat().st_size > 5000
    # The exact-accuracy curve holds both evaluations (steps 4 and 8) beside training.
    rows = plots.read_metrics(tmp_path / "runs" / "toy")
    exact = next(c for c in plots.CURVES if c.name == "exact_accuracy")
    assert plots.series(rows, exact)["exact/exact_accuracy"][0] == [4, 8]


def test_run_without_matplotlib_trains_and_says_once_how_to_install(toy_registry, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setattr(plots, "_said", set())
    path = toy_experiment(tmp_path / "exp.toml", epochs=3, eval_interval=1)
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.count("matplotlib is not installed (pip install 'rrcore[plots]')") == 1
    assert not (tmp_path / "runs" / "toy" / "plots").exists()
    lines = (tmp_path / "runs" / "toy" / "metrics.jsonl").read_text().splitlines()
    assert sum("exact/exact_accuracy" in json.loads(line) for line in lines) == 3  # evaluated all the same
