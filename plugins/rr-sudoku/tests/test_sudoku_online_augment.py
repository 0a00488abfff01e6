"""``[data] online_augment``: fresh Sudoku symmetries for every training batch, on the device."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import attrs
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from rr_sudoku.augment import SudokuBatchAugmenter, device_transforms, invert_tokens, transform_tokens
from rr_sudoku.builder import SudokuDataConfig, batch_augmenter, cache_key
from rr_sudoku.generator import generate_many
from rr_sudoku.grid import BLANK_TOKEN, PAD_TOKEN, from_tokens, to_tokens, valid_solutions
from rr_sudoku.reader import SudokuDataError
from rr_sudoku.task import SudokuTask

from rrcore.api import BatchAugmenter
from rrcore.cli.main import main
from rrcore.contracts.config import load_experiment
from rrcore.contracts.metadata import DatasetMetadata
from rrcore.training.checkpoint import load_checkpoint
from rrcore.training.loop import Trainer

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sudoku4x4-trm.toml"


def _batch(size: int, count: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Generated puzzles as the trainer's batch: int32 inputs, int64 labels, identifiers."""
    puzzles, solutions, _ = generate_many(size, count, seed=seed, jobs=1)
    return {
        "inputs": torch.from_numpy(to_tokens(puzzles).astype(np.int32)),
        "labels": torch.from_numpy(to_tokens(solutions).astype(np.int64)),
        "puzzle_identifiers": torch.zeros(count, dtype=torch.int32),
    }


def _augment(batch, size: int, seed: int = 0, row_offset: int = 0, global_batch_size: int | None = None):
    generator = torch.Generator().manual_seed(seed)
    return SudokuBatchAugmenter(size)(batch, generator, row_offset, global_batch_size or batch["inputs"].shape[0])


@pytest.mark.parametrize("size", [4, 9])
def test_augmented_batches_are_valid_sudoku_whose_solutions_keep_their_givens(size):
    batch = _batch(size, 24)
    augmented = _augment(batch, size)
    assert {k: (v.shape, v.dtype) for k, v in augmented.items()} == {k: (v.shape, v.dtype) for k, v in batch.items()}
    assert augmented["puzzle_identifiers"] is batch["puzzle_identifiers"]
    puzzles, solutions = from_tokens(augmented["inputs"].numpy()), from_tokens(augmented["labels"].numpy())
    assert valid_solutions(puzzles, solutions, size).all()
    givens = (batch["inputs"] != BLANK_TOKEN).sum(1)
    assert torch.equal((augmented["inputs"] != BLANK_TOKEN).sum(1), givens)  # givens move, none appear
    assert not torch.equal(augmented["inputs"], batch["inputs"])


@pytest.mark.parametrize("size", [4, 9])
def test_the_transforms_invert_exactly_and_leave_pad_blank_and_ignored_labels_alone(size):
    batch = _batch(size, 16)
    inputs, labels = batch["inputs"].clone(), batch["labels"].clone()
    inputs[0], labels[0] = PAD_TOKEN, -100  # a padding row, as evaluation batches have
    labels[1, : size + 1] = -100  # a few unscored cells
    sources, digit_maps = device_transforms(16, size, torch.Generator().manual_seed(1))
    moved_inputs = transform_tokens(inputs, sources, digit_maps)
    moved_labels = transform_tokens(labels, sources, digit_maps)
    assert (moved_inputs[0] == PAD_TOKEN).all() and (moved_labels[0] == -100).all()
    assert torch.equal((moved_labels == -100).sum(1), (labels == -100).sum(1))
    assert torch.equal((moved_inputs == BLANK_TOKEN).sum(1), (inputs == BLANK_TOKEN).sum(1))
    assert torch.equal(invert_tokens(moved_inputs, sources, digit_maps), inputs)
    assert torch.equal(invert_tokens(moved_labels, sources, digit_maps), labels)
    # The same (sources, digit_maps) form as the numpy draws: the task's inverse undoes them too.
    task = SudokuTask(None, SimpleNamespace(seq_len=size * size))
    state = (sources.numpy()[:, None], digit_maps.numpy()[:, None])
    solutions = moved_labels.numpy()[2:, None]
    assert np.array_equal(task.invert(solutions, (state[0][2:], state[1][2:]))[:, 0], labels.numpy()[2:])


def test_each_row_draws_its_own_symmetry_reproducibly_whatever_rank_takes_it():
    one = _batch(9, 1)
    same = {k: v.repeat(64, *[1] * (v.dim() - 1)) for k, v in one.items()}  # one puzzle, 64 times
    augmented = _augment(same, 9)
    assert len({tuple(row.tolist()) for row in augmented["labels"]}) == 64
    assert torch.equal(augmented["labels"], _augment(same, 9)["labels"])  # from the seed
    assert not torch.equal(augmented["labels"], _augment(same, 9, seed=1)["labels"])
    halves = [
        _augment({k: v[rows] for k, v in same.items()}, 9, row_offset=rows.start, global_batch_size=64)
        for rows in (slice(0, 32), slice(32, 64))
    ]
    assert torch.equal(torch.cat([half["inputs"] for half in halves]), augmented["inputs"])
    assert torch.equal(torch.cat([half["labels"] for half in halves]), augmented["labels"])


def test_off_by_default_and_the_key_builds_nothing_anew():
    metadata = SimpleNamespace(seq_len=81)
    assert SudokuDataConfig().online_augment is False
    assert batch_augmenter(SudokuDataConfig(), metadata) is None
    assert isinstance(SudokuBatchAugmenter(9), BatchAugmenter)  # the core's protocol
    assert batch_augmenter(SudokuDataConfig(online_augment=True), metadata) == SudokuBatchAugmenter(9)
    assert batch_augmenter(SudokuDataConfig(online_augment=True), SimpleNamespace(seq_len=16)) == SudokuBatchAugmenter(
        4
    )
    with pytest.raises(SudokuDataError, match="online_augment: 25 cells is no supported Sudoku"):
        batch_augmenter(SudokuDataConfig(online_augment=True), SimpleNamespace(seq_len=25))
    config = SudokuDataConfig(source="generate", train_size=10, test_size=2)
    assert cache_key(config) == cache_key(attrs.evolve(config, online_augment=True))
    assert "online_augment" not in cache_key(config)["config"]


def test_the_4x4_example_trains_on_the_puzzles_alone_with_online_augmentation(tmp_path):
    if not EXAMPLE.exists():
        pytest.skip("runs from a source checkout (examples/)")
    settings = [
        "data.online_augment=true",
        "data.num_aug=0",
        "train.max_steps=20",
        f"run.out_dir={str(tmp_path / 'runs')!r}",
        f"run.cache_dir={str(tmp_path / 'cache')!r}",
        "run.device='cpu'",
        "run.cpu_threads=1",
    ]
    result = CliRunner().invoke(main, ["run", str(EXAMPLE), *[a for s in settings for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    assert "rr: finished sudoku4x4-trm at step 20" in result.output
    run_dir = tmp_path / "runs" / "sudoku4x4-trm"
    assert "online_augment = true" in (run_dir / "config.toml").read_text()
    (built,) = (tmp_path / "cache").glob("sudoku4x4-*/train")
    assert DatasetMetadata.from_json(built / "dataset.json").total_groups == 2000  # no copies on disk
    assert len(np.load(built / "all__inputs.npy")) == 2000

    # Stopped at step 10 and resumed, it ends where 20 steps in one go ended.
    experiment = load_experiment(run_dir / "config.toml")
    first = Trainer(experiment, run_dir=tmp_path / "resumed")
    assert first.run.batch_augmenter == SudokuBatchAugmenter(4)
    batches = first.run.train_data.train_batches()
    for _ in range(10):
        first.position, batch = next(batches)
        first.train_step(batch, {})
    first.save()
    resumed = Trainer(experiment, run_dir=tmp_path / "resumed", resume="latest")
    batches = resumed.run.train_data.train_batches(resumed.position)
    for _ in range(10):
        resumed.position, batch = next(batches)
        resumed.train_step(batch, {})
    resumed.save()
    straight = load_checkpoint(run_dir / "checkpoints" / "step_20")[0]["model"]
    for key, value in resumed.run.model.state_dict().items():
        assert torch.equal(value, straight[key]), key
