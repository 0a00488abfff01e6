"""The compiled ACT step computes the eager step's gradients, with inductor itself (on CPU,
in float32), for every parameter: a compiler change that alters learning fails here.

Losses alone cannot show it. With the blocks' backward as nested compile regions, inductor
gave TRM's token embedding a gradient 45% off and HRM's L-level weights 5-8% off, while the
loss stayed the same to 7 digits (torch 2.13, CPU; ``rrcore.model.layers.repeated_region``).
"""

from __future__ import annotations

import pytest
from gradient_helpers import ARCHITECTURES, EXAMPLES, gradient_differences

from rrcore.contracts.config import load_experiment
from rrcore.training.build import build_run


@pytest.mark.parametrize("name", ["trm-mlp", "trm-att", "hrm", "urm"])
def test_inductor_gradients_equal_eager_gradients(bundled_registry, name):
    example, overrides = ARCHITECTURES[name]
    sizes = ["run.device='cpu'", "train.compile='off'", "data.train_size=64", "data.test_size=16"]
    experiment = load_experiment(EXAMPLES / example, [*overrides, *sizes])
    differences = gradient_differences(build_run(experiment, optimizers=False, evaluators=False), "inductor")
    wrong = {name: round(d, 4) for name, d in differences.items() if d > 1e-3}
    assert not wrong, f"compiled gradients differ from eager ones (relative): {wrong}"
