"""A fixed-seed training trajectory, pinned: a speed change that alters learning fails here.

The toy model trains 12 steps with the papers' optimizer (AdamAtan2), sign-SGD puzzle
embeddings, exploration, the bootstrapped Q-continue target, gradient clipping and EMA.
The pinned losses and weight checksums were recorded on CPU (float32) before the
training step was compiled as one graph; regenerate them only for an intended change
of numerics: ``RR_PIN_TRAJECTORY=1 python -m pytest tests/test_trajectory.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from toy_helpers import toy_experiment

from rrcore.contracts.config import load_experiment
from rrcore.training.loop import Trainer

PINNED = Path(__file__).parent / "data" / "toy_trajectory.json"
STEPS = 12


def _trajectory(tmp_path: Path) -> dict[str, object]:
    path = toy_experiment(tmp_path / "exp.toml", extra='[optimizer]\nplugin = "adam_atan2"\n')
    path.write_text(path.read_text().replace('[optimizer]\nplugin = "adamw"\n', ""))
    experiment = load_experiment(
        path,
        [
            "act.q_continue=true",
            "train.grad_clip=1.0",
            "train.ema=true",
            "train.ema_rate=0.9",
            "train.weight_decay=0.1",
        ],
    )
    assert experiment.optimizer.plugin == "adam_atan2" and experiment.act.q_continue
    trainer = Trainer(experiment, run_dir=tmp_path / "run")
    batches = trainer.run.train_data.train_batches()
    losses = []
    for _ in range(STEPS):
        sums: dict[str, torch.Tensor] = {}
        trainer.train_step(next(batches)[1], sums)
        losses.append(float(sums["loss"]))
    weights = {
        name: [float(p.detach().double().sum()), float(p.detach().double().square().sum())]
        for name, p in trainer.run.model.named_parameters()
    }
    weights["puzzle_emb"] = [
        float(trainer.run.model.puzzle_emb.weights.double().sum()),
        float(trainer.run.model.puzzle_emb.weights.double().square().sum()),
    ]
    ema = {name: float(t.double().sum()) for name, t in trainer.run.ema.state_dict().items()}
    return {"losses": losses, "weights": weights, "ema": ema}


def test_training_trajectory_is_unchanged(toy_registry, tmp_path):
    got = _trajectory(tmp_path)
    if os.environ.get("RR_PIN_TRAJECTORY"):
        PINNED.write_text(json.dumps(got, indent=1) + "\n")
    pinned = json.loads(PINNED.read_text())
    # float32 on different CPUs rounds differently; a change of update rule, loss or
    # halting moves these by far more than 1e-4.
    torch.testing.assert_close(got["losses"], pinned["losses"], rtol=1e-4, atol=1e-6)
    assert got["weights"].keys() == pinned["weights"].keys()
    for name, values in pinned["weights"].items():
        torch.testing.assert_close(got["weights"][name], values, rtol=1e-4, atol=1e-5, msg=name)
    for name, value in pinned["ema"].items():
        torch.testing.assert_close(got["ema"][name], value, rtol=1e-4, atol=1e-5, msg=name)
