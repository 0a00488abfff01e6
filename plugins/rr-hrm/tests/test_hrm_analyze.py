"""rr analyze and rr report on a (barely) trained 4x4 Sudoku HRM: states per update, PR_H / PR_L."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rrcore.cli.main import main
from rrcore.testing import train_briefly

pytest.importorskip("rr_sudoku", reason="needs the rr-sudoku plugin for the 4x4 data set")
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sudoku4x4-hrm.toml"
SMALL = [
    "data.train_size=64",
    "data.test_size=12",
    "data.num_aug=0",
    "train.global_batch_size=16",
    "train.max_steps=2",
    "train.eval_interval=0",
    "model.hidden_size=16",
    "model.H_cycles=2",
    "model.L_cycles=3",
]


@pytest.mark.skipif(not EXAMPLE.exists(), reason="runs from a source checkout (examples/)")
def test_analyze_records_z_H_and_z_L_of_every_update_trained_and_untrained(tmp_path):
    run = train_briefly(EXAMPLE, tmp_path, SMALL).run_dir
    for extra, folder in (([], "step_2"), (["--untrained"], "untrained")):
        result = CliRunner().invoke(main, ["analyze", str(run), "--puzzles", "10", *extra])
        assert result.exit_code == 0, result.output
        analysis = json.loads((run / "analysis" / folder / "analysis.json").read_text())
        assert analysis["puzzles"] == 10 and analysis["act_steps"] == 4
        z_H, z_L = analysis["states"]["z_H"], analysis["states"]["z_L"]
        assert (z_H["updates_per_step"], z_L["updates_per_step"]) == (2, 6)
        assert len(z_H["forward_residuals"]) == 4 * 2 - 1 and len(z_L["forward_residuals"]) == 4 * 6 - 1
        assert all(r > 0 for r in z_L["forward_residuals"])
        assert z_H["samples"] == 10 * 8 and z_H["dimensions"] == 16 * 16
        assert analysis["participation_ratio_ratios"]["z_H/z_L"] == pytest.approx(
            z_H["participation_ratio"] / z_L["participation_ratio"]
        )
        assert f"PR_H / PR_L = {analysis['participation_ratio_ratios']['z_H/z_L']:.2f}" in result.output
        assert len(analysis["exact_accuracy_per_step"]) == 4
        if extra == []:
            pytest.importorskip("matplotlib")
            assert {p.name for p in (run / "analysis" / folder).glob("*.png")} == {
                "residuals.png",
                "participation_ratio.png",
                "accuracy_per_step.png",
            }


@pytest.mark.skipif(not EXAMPLE.exists(), reason="runs from a source checkout (examples/)")
def test_report_draws_sudoku_grids_with_q_continue(tmp_path):
    run = train_briefly(EXAMPLE, tmp_path, SMALL).run_dir
    result = CliRunner().invoke(main, ["report", str(run), "--puzzles", "1"])
    assert result.exit_code == 0, result.output
    text = (run / "report.html").read_text()
    assert 'class="grid"' in text and "q_continue" in text  # HRM halts on q_halt > q_continue
    assert 'class="bl cell' in text  # box borders of the 4x4 grid
