"""The compiled ACT step computes the eager step's gradients, with inductor itself (on CPU,
in float32), for every parameter: a compiler change that alters learning fails here.

Losses alone cannot show it. With the blocks' backward as nested compile regions, inductor
gave TRM's token embedding a gradient 45% off and HRM's L-level weights 5-8% off, while the
loss stayed the same to 7 digits (torch 2.13, CPU; ``rrcore.nn.repeated_region``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gradient_helpers import gradient_differences

from rrcore.config import load_experiment
from rrcore.registry import load_registry, set_registry
from rrcore.run import build_run

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
def bundled_registry(tmp_path, monkeypatch):
    monkeypatch.delenv("RR_LOAD_PLUGINS", raising=False)
    monkeypatch.setenv("RR_CACHE_DIR", str(tmp_path / "cache"))
    torch._dynamo.reset()
    set_registry(None)
    registry = load_registry()
    if not {"trm", "hrm"} <= {s.name for s in registry.all_components() if s.kind == "model"}:
        pytest.skip("the bundled model plugins are not installed")
    set_registry(registry)
    yield registry
    set_registry(None)
    torch._dynamo.reset()


@pytest.mark.parametrize("example", ["sudoku4x4-trm.toml", "sudoku4x4-hrm.toml"])
def test_inductor_gradients_equal_eager_gradients(bundled_registry, example):
    experiment = load_experiment(
        EXAMPLES / example, ["run.device='cpu'", "train.compile='off'", "data.train_size=64", "data.test_size=16"]
    )
    differences = gradient_differences(build_run(experiment, optimizers=False, evaluators=False), "inductor")
    wrong = {name: round(d, 4) for name, d in differences.items() if d > 1e-4}
    assert not wrong, f"compiled gradients differ from eager ones (relative): {wrong}"
