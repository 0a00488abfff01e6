"""A data set plugin's batch augmenter: called on every training batch (never in evaluation),
its generator seeded from ``run.seed`` and carried through checkpoints for an exact resume."""

from __future__ import annotations

import types
from pathlib import Path

import torch
from toy_helpers import toy_experiment

from rrcore import hookimpl
from rrcore.contracts.config import load_experiment
from rrcore.contracts.protocols import BatchAugmenter
from rrcore.contracts.specs import DatasetSpec
from rrcore.training.checkpoint import load_checkpoint
from rrcore.training.loop import Trainer, train


class ShiftDigits:
    """The toy task's symmetry: add the same random k (mod 10) to a row's input and label
    digits (the label stays the input's next digit); records how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []

    def __call__(self, batch, generator, row_offset, global_batch_size):
        self.calls.append((batch["inputs"].shape[0], row_offset, global_batch_size))
        shift = torch.randint(0, 10, (global_batch_size, 1), generator=generator, device=generator.device)
        shift = shift[row_offset : row_offset + batch["inputs"].shape[0]]
        return {
            **batch,
            "inputs": ((batch["inputs"] - 1 + shift) % 10 + 1).to(batch["inputs"].dtype),
            "labels": (batch["labels"] - 1 + shift) % 10 + 1,
        }


def _augmenting_plugin(augmenter: ShiftDigits | None) -> types.ModuleType:
    """Data set ``toy_augmented``: the toy data set with ``augmenter`` (None: it offers one
    that the config turns down)."""
    import rr_toy

    plugin = types.ModuleType("toy_augmented")

    @hookimpl
    def rr_register_datasets():
        return [
            DatasetSpec(
                name="toy_augmented",
                factory=rr_toy.build_dataset,
                config_class=rr_toy.ToyDataConfig,
                batch_augmenter=lambda config, metadata: augmenter,
            )
        ]

    plugin.rr_register_datasets = rr_register_datasets
    return plugin


def _experiment(tmp_path: Path, name: str):
    path = toy_experiment(tmp_path / f"{name}.toml", epochs=2, log_interval=1)
    path.write_text(path.read_text().replace('plugin = "toy"\n\n[model]', 'plugin = "toy_augmented"\n\n[model]'))
    return load_experiment(path)


def _steps(experiment, run_dir: Path, steps: int, resume: str | None = None) -> Trainer:
    trainer = Trainer(experiment, run_dir=run_dir, resume=resume)
    batches = trainer.run.train_data.train_batches(trainer.position)
    for _ in range(steps):
        trainer.position, batch = next(batches)
        trainer.train_step(batch, {})
    return trainer


def test_every_training_batch_is_augmented_once_and_evaluation_never(toy_registry, tmp_path):
    augmenter = ShiftDigits()
    assert isinstance(augmenter, BatchAugmenter)
    toy_registry.register_module(_augmenting_plugin(augmenter), name="augmenting", distribution="test", version="0")
    result = train(_experiment(tmp_path, "a"), run_dir=tmp_path / "run")
    assert result.status == "finished" and result.step == 8
    assert augmenter.calls == [(8, 0, 8)] * 8  # the whole global batch on one rank
    _, per_rank, _ = load_checkpoint(result.checkpoint, 0)
    assert per_rank["rng"]["augmentation"] is not None


def test_resume_restores_the_augmenters_generator_exactly(toy_registry, tmp_path):
    toy_registry.register_module(_augmenting_plugin(ShiftDigits()), name="augmenting", distribution="test", version="0")
    experiment = _experiment(tmp_path, "a")
    straight = _steps(experiment, tmp_path / "straight", 6)

    first = _steps(experiment, tmp_path / "resumed", 3)
    first.save()
    resumed = _steps(experiment, tmp_path / "resumed", 3, resume="latest")

    fresh = torch.Generator().manual_seed(experiment.run.seed + 2)
    augmentation = straight.run.augmentation_generator.get_state()
    assert not torch.equal(augmentation, fresh.get_state())  # it drew
    assert torch.equal(augmentation, resumed.run.augmentation_generator.get_state())
    a, b = straight.run.model.state_dict(), resumed.run.model.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_an_augmenter_the_config_turns_down_changes_nothing(toy_registry, tmp_path):
    toy_registry.register_module(_augmenting_plugin(None), name="augmenting", distribution="test", version="0")
    trainer = _steps(_experiment(tmp_path, "a"), tmp_path / "run", 1)
    assert trainer.run.batch_augmenter is None and trainer.run.augmentation_generator is None
    assert "augmentation" not in trainer.random_state.state_dict()
