"""Evaluator metrics on hand-made predictions, and bucketing by rating."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rr_sudoku.builder import RATINGS_FILE, SudokuDataConfig, build_dataset
from rr_sudoku.evaluator import SudokuEvalConfig, SudokuEvaluator
from rr_sudoku.grid import to_tokens

from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import EvalContext
from rrcore.data.loader import PuzzleDataset

SOLUTION = np.array([1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1])
# Swapping digits 3 and 4 in the last two columns gives another valid grid.
OTHER = np.array([1, 2, 4, 3, 3, 4, 2, 1, 2, 1, 3, 4, 4, 3, 1, 2])


def _evaluator(tmp_path, ratings=None, buckets=(0, 10), output_dir=None):
    if ratings is not None:
        np.save(tmp_path / RATINGS_FILE, np.asarray(ratings))
    meta = DatasetMetadata(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=6,
        seq_len=16,
        num_puzzle_identifiers=1,
        total_groups=4,
        mean_puzzle_examples=1.0,
        sets=["all"],
    )
    evaluator = SudokuEvaluator(
        SudokuEvalConfig(rating_buckets=list(buckets)), EvalContext(metadata=meta, data_dir=tmp_path)
    )
    evaluator.begin_eval(output_dir or tmp_path)
    return evaluator


def _batch(puzzles, solutions, preds, valid=None):
    rows = len(puzzles)
    return (
        {
            "inputs": torch.from_numpy(to_tokens(np.stack(puzzles))).int(),
            "labels": torch.from_numpy(to_tokens(np.stack(solutions))).long(),
            "index": torch.arange(rows),
            "valid": torch.ones(rows, dtype=torch.bool) if valid is None else valid,
        },
        {"preds": torch.from_numpy(to_tokens(np.stack(preds))).long()},
    )


def test_metrics_on_hand_made_predictions(tmp_path):
    ambiguous = SOLUTION * np.isin(np.arange(16), [0, 1, 4, 5, 8, 9, 12, 13])  # last two columns blank
    wrong = SOLUTION.copy()
    wrong[[2, 3]] = [3, 3]  # one wrong cell, a repeated digit
    changes_given = OTHER.copy()  # valid grid, but given 1 at cell 0 ...
    changes_given[[0, 1, 4, 5, 8, 9, 12, 13]] = [2, 1, 4, 3, 1, 2, 3, 4]  # ... swapped to another valid grid
    puzzles = [ambiguous, ambiguous, ambiguous, ambiguous]
    preds = [SOLUTION, wrong, OTHER, changes_given]
    evaluator = _evaluator(tmp_path, ratings=[0, 0, 20, 20])
    evaluator.update_batch(*_batch(puzzles, [SOLUTION] * 4, preds))
    result = evaluator.result()
    assert result["count"] == 4
    assert result["exact_accuracy"] == 0.25
    assert result["valid_solution"] == 0.5  # the label and OTHER; not wrong nor changes_given
    blank_cells = 4 * 8
    blank_correct = 8 + 7 + 0 + int((changes_given == SOLUTION)[ambiguous == 0].sum())
    assert result["blank_accuracy"] == pytest.approx(blank_correct / blank_cells)
    all_correct = sum(int((p == SOLUTION).sum()) for p in preds)
    assert result["cell_accuracy"] == pytest.approx(all_correct / 64)
    assert result["exact_accuracy/rating_0-9"] == 0.5 and result["count/rating_0-9"] == 2
    assert result["valid_solution/rating_10+"] == 0.5 and result["exact_accuracy/rating_10+"] == 0.0


def test_padding_rows_and_pad_tokens_do_not_count(tmp_path):
    evaluator = _evaluator(tmp_path)
    puzzle = SOLUTION * (np.arange(16) % 3 == 0)
    broken = np.zeros(16, dtype=np.int64)  # pad tokens are no digits
    batch, outputs = _batch(
        [puzzle, puzzle], [SOLUTION, SOLUTION], [SOLUTION, broken], valid=torch.tensor([True, False])
    )
    evaluator.update_batch(batch, outputs)
    result = evaluator.result()
    assert result["count"] == 1 and result["exact_accuracy"] == 1.0 and result["valid_solution"] == 1.0
    assert not any("/rating_" in key for key in result)  # no ratings file, no buckets
    evaluator.begin_eval(tmp_path)
    batch, outputs = _batch([puzzle], [SOLUTION], [broken])
    evaluator.update_batch(batch, outputs)
    assert evaluator.result()["valid_solution"] == 0.0


def _read_predictions(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]


def test_writes_one_prediction_row_per_puzzle_and_the_metrics(tmp_path):
    output = tmp_path / "eval" / "step_7" / "sudoku"
    evaluator = _evaluator(tmp_path, ratings=[3, 0, 20], output_dir=output)
    puzzle = SOLUTION * (np.arange(16) % 3 == 0)
    wrong = SOLUTION.copy()
    wrong[1] = 3
    # Batches arrive out of index order, the second padded with a row that must not count.
    batch, outputs = _batch([puzzle], [SOLUTION], [wrong])
    batch["index"] = torch.tensor([2])
    evaluator.update_batch(batch, outputs)
    batch, outputs = _batch(
        [puzzle, puzzle, puzzle], [SOLUTION] * 3, [SOLUTION, SOLUTION, wrong], valid=torch.tensor([True, True, False])
    )
    evaluator.update_batch(batch, outputs)
    result = evaluator.result()
    rows = _read_predictions(output)
    assert [row["index"] for row in rows] == [0, 1, 2]
    given = "".join(str(d) if d else "." for d in puzzle)
    assert rows[0] == {
        "index": 0,
        "input": given,
        "prediction": "1234341221434321",
        "label": "1234341221434321",
        "correct": True,
        "rating": 3,
    }
    assert rows[2]["prediction"] == "1334341221434321" and rows[2]["correct"] is False
    assert rows[2]["rating"] == 20
    assert json.loads((output / "results.json").read_text()) == result
    assert result["exact_accuracy"] == pytest.approx(2 / 3)


def test_predictions_can_be_switched_off(tmp_path):
    meta = DatasetMetadata(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=6,
        seq_len=16,
        num_puzzle_identifiers=1,
        total_groups=1,
        mean_puzzle_examples=1.0,
        sets=["all"],
    )
    context = EvalContext(metadata=meta, data_dir=tmp_path)
    evaluator = SudokuEvaluator(SudokuEvalConfig(write_predictions=False), context)
    evaluator.begin_eval(tmp_path / "out")
    evaluator.update_batch(*_batch([SOLUTION], [SOLUTION], [SOLUTION]))
    assert evaluator.result()["exact_accuracy"] == 1.0
    assert not (tmp_path / "out").exists()


def _rank_main(rank: int, split: str, out: str, init_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        dataset = PuzzleDataset(Path(split), global_batch_size=4, rank=rank, world_size=2)
        context = EvalContext(metadata=dataset.metadata, data_dir=Path(split), rank=rank, world_size=2)
        evaluator = SudokuEvaluator(SudokuEvalConfig(), context)
        evaluator.begin_eval(Path(out))
        for batch in dataset.eval_batches():
            preds = batch["labels"].clone()
            unsolved = batch["index"] == 0  # puzzle 0 comes back as it was given
            preds[unsolved] = batch["inputs"][unsolved].to(preds.dtype)
            evaluator.update_batch(batch, {"preds": preds})
        assert (evaluator.result() is None) == (rank != 0)
    finally:
        dist.destroy_process_group()


def test_distributed_evaluation_writes_every_ranks_rows_once(tmp_path):
    config = SudokuDataConfig(source="generate", size=4, train_size=4, test_size=7, jobs=1)
    split = build_dataset(config, tmp_path / "cache") / "test"
    args = (str(split), str(tmp_path / "out"), str(tmp_path / "init"))
    torch.multiprocessing.spawn(_rank_main, args=args, nprocs=2)
    rows = _read_predictions(tmp_path / "out")
    assert [row["index"] for row in rows] == list(range(7))  # both ranks, no padding rows
    assert [row["correct"] for row in rows] == [False] + [True] * 6
    assert rows[0]["prediction"] == rows[0]["input"] and "." in rows[0]["input"]
    labels = np.load(split / "all__labels.npy")
    assert rows[3]["label"] == "".join(str(token - 1) for token in labels[3])
    assert json.loads((tmp_path / "out" / "results.json").read_text())["count"] == 7
