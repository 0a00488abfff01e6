"""The README demo's TRM-MLP learns 4x4 Sudoku on CPU: 90-99% exact at step 250 when measured (seeds 0-2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rrcore.testing import train_briefly

pytest.importorskip("rr_sudoku", reason="needs the rr-sudoku plugin for the 4x4 data set")
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sudoku4x4-trm.toml"


@pytest.mark.skipif(not EXAMPLE.exists(), reason="runs from a source checkout (examples/)")
def test_learns_4x4_sudoku_on_cpu(tmp_path):
    result = train_briefly(EXAMPLE, tmp_path, ["train.max_steps=250", "train.eval_interval=0"])
    assert result.step == 250
    assert result.eval_results["sudoku/exact_accuracy"] >= 0.8
