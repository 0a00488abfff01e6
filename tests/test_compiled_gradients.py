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
    if not {"trm", "hrm", "urm"} <= {s.name for s in registry.all_components() if s.kind == "model"}:
        pytest.skip("the bundled model plugins are not installed")
    set_registry(registry)
    yield registry
    set_registry(None)
    torch._dynamo.reset()


# Small versions of the papers' architectures on the generated 4x4 Sudoku (as tests/test_gpu.py).
ARCHITECTURES = {
    "trm-mlp": ("sudoku4x4-trm.toml", []),
    "trm-att": (
        "sudoku4x4-trm.toml",
        ["model.mlp_t=false", "model.pos_encodings='rope'", "model.puzzle_emb_ndim=64", "model.puzzle_emb_len=1"],
    ),
    "hrm": ("sudoku4x4-hrm.toml", []),
    "urm": ("sudoku4x4-urm.toml", []),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_inductor_gradients_equal_eager_gradients(bundled_registry, name):
    example, overrides = ARCHITECTURES[name]
    sizes = ["run.device='cpu'", "train.compile='off'", "data.train_size=64", "data.test_size=16"]
    experiment = load_experiment(EXAMPLES / example, [*overrides, *sizes])
    differences = gradient_differences(build_run(experiment, optimizers=False, evaluators=False), "inductor")
    wrong = {name: round(d, 4) for name, d in differences.items() if d > 1e-3}
    assert not wrong, f"compiled gradients differ from eager ones (relative): {wrong}"
