"""The on-disk format: writing, validation errors, sampling and sharding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rrcore.contracts.metadata import DataFormatError, DatasetMetadata
from rrcore.data.cache import cached_build
from rrcore.data.loader import PuzzleDataset, StreamPosition
from rrcore.data.writer import SplitWriter


def _metadata(**changes) -> DatasetMetadata:
    values = dict(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=5,
        seq_len=2,
        num_puzzle_identifiers=20,
        total_groups=4,
        mean_puzzle_examples=1.5,
        sets=["all"],
    )
    values.update(changes)
    return DatasetMetadata(**values)


def _write(folder, groups=((1, 2), (1,), (3,), (2, 2))) -> None:
    with SplitWriter(folder, seq_len=2) as writer:
        identifier, value = 1, 1
        for group in groups:
            for examples in group:
                rows = [[value % 4 + 1, (value + 1) % 4 + 1] for _ in range(examples)]
                writer.add_puzzle(identifier, rows, rows)
                identifier += 1
                value += 1
            writer.end_group()
        writer.finish(pad_id=0, ignore_label_id=0, vocab_size=5, num_puzzle_identifiers=20)


def test_written_split_loads_and_labels_map_ignore_to_minus_100(tmp_path):
    with SplitWriter(tmp_path / "train", seq_len=2) as writer:
        writer.add_puzzle(3, [[1, 2]], [[0, 4]])  # label 0 (= ignore_label_id) is not scored
        metadata = writer.finish(pad_id=0, ignore_label_id=0, vocab_size=5, num_puzzle_identifiers=20)
    assert (metadata.total_groups, metadata.mean_puzzle_examples) == (1, 1.0)
    data = PuzzleDataset(tmp_path / "train", global_batch_size=2)
    batch = next(data.eval_batches())
    assert batch["labels"][0].tolist() == [-100, 4]
    assert batch["puzzle_identifiers"].tolist() == [3, 0] and batch["valid"].tolist() == [True, False]
    _write(tmp_path / "more")
    assert PuzzleDataset(tmp_path / "more", global_batch_size=4).num_examples == 11


def test_training_stream_takes_one_puzzle_per_group_and_is_seeded(tmp_path):
    _write(tmp_path / "train")
    data = PuzzleDataset(tmp_path / "train", global_batch_size=4, seed=1)
    stream = data.epoch_stream(0)
    puzzles = np.searchsorted(data.puzzle_indices, stream, side="right") - 1
    groups = np.searchsorted(data.group_indices, np.unique(puzzles), side="right") - 1
    assert sorted(groups.tolist()) == [0, 1, 2, 3]  # every group once, one puzzle each
    assert np.array_equal(stream, data.epoch_stream(0))
    assert not all(np.array_equal(data.epoch_stream(0), data.epoch_stream(e)) for e in range(1, 6))


def test_ranks_take_disjoint_rows_of_the_same_global_batches(tmp_path):
    _write(tmp_path / "train")
    whole = PuzzleDataset(tmp_path / "train", global_batch_size=4, seed=2)
    ranks = [PuzzleDataset(tmp_path / "train", global_batch_size=4, seed=2, rank=r, world_size=2) for r in (0, 1)]
    iters = [whole.train_batches(), ranks[0].train_batches(), ranks[1].train_batches()]
    for _ in range(6):
        (pos, full), (pos0, part0), (pos1, part1) = (next(it) for it in iters)
        assert pos == pos0 == pos1
        assert np.array_equal(full["inputs"].numpy(), np.concatenate([part0["inputs"], part1["inputs"]]))


def test_resuming_the_stream_continues_where_it_stopped(tmp_path):
    _write(tmp_path / "train")
    data = PuzzleDataset(tmp_path / "train", global_batch_size=3, seed=4)
    it = data.train_batches()
    batches = [next(it) for _ in range(7)]
    position = batches[3][0]
    resumed = data.train_batches(StreamPosition(position.epoch, position.offset))
    for expected in batches[4:]:
        assert np.array_equal(next(resumed)[1]["inputs"], expected[1]["inputs"])


def test_eval_batches_cover_every_example_once_with_padding(tmp_path):
    _write(tmp_path / "test")
    ranks = [PuzzleDataset(tmp_path / "test", global_batch_size=4, rank=r, world_size=2) for r in (0, 1)]
    seen = []
    for data in ranks:
        for batch in data.eval_batches():
            seen += batch["index"][batch["valid"]].tolist()
            assert (batch["labels"][~batch["valid"]] == -100).all()
    assert sorted(seen) == list(range(11))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "all__labels.npy").unlink(), "all__labels.npy: missing array"),
        (lambda d: np.save(d / "all__labels.npy", np.zeros((11, 3), np.int32)), "differs from inputs"),
        (lambda d: np.save(d / "all__inputs.npy", np.full((11, 2), 7, np.int32)), "token 7 outside the vocabulary"),
        (lambda d: np.save(d / "all__puzzle_indices.npy", np.array([0, 1, 2], np.int32)), "puzzle_indices"),
        (lambda d: np.save(d / "all__puzzle_identifiers.npy", np.full(6, 99, np.int32)), "num_puzzle_identifiers"),
        (lambda d: (d / "all__group_indices.npy").write_bytes(b"garbage"), "not a readable .npy"),
        (lambda d: (d / "dataset.json").write_text(json.dumps({"pad_id": 0})), "missing keys"),
    ],
)
def test_malformed_files_are_named(tmp_path, damage, message):
    _write(tmp_path / "train")
    damage(tmp_path / "train")
    with pytest.raises(DataFormatError, match=message) as error:
        PuzzleDataset(tmp_path / "train", global_batch_size=4)
    assert str(tmp_path / "train") in str(error.value)


def test_cached_build_builds_once_and_never_leaves_partial_folders(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        _write(folder / "train")
        _write(folder / "test")

    first = cached_build(tmp_path, "demo", {"n": 1}, build)
    assert cached_build(tmp_path, "demo", {"n": 1}, build) == first and len(calls) == 1
    assert cached_build(tmp_path, "demo", {"n": 2}, build) != first

    def failing(folder):
        (folder / "train").mkdir()
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cached_build(tmp_path, "demo", {"n": 3}, failing)
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["demo", "demo"]


def test_device_resident_copy_gives_the_same_batches(tmp_path):
    _write(tmp_path / "train")
    mapped = PuzzleDataset(tmp_path / "train", global_batch_size=4, seed=3, on_device=False)
    resident = PuzzleDataset(tmp_path / "train", global_batch_size=4, seed=3, on_device=True)
    for _, ((_, a), (_, b)) in zip(range(5), zip(mapped.train_batches(), resident.train_batches())):
        assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    for a, b in zip(mapped.eval_batches(), resident.eval_batches()):
        assert all(torch.equal(a[k], b[k]) for k in a)
