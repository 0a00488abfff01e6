"""Evaluator metrics on hand-made predictions, and bucketing by rating."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rr_sudoku.builder import RATINGS_FILE
from rr_sudoku.evaluator import SudokuEvalConfig, SudokuEvaluator
from rr_sudoku.grid import to_tokens

from rrcore.data import DatasetMetadata
from rrcore.evaluation import EvalContext

SOLUTION = np.array([1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1])
# Swapping digits 3 and 4 in the last two columns gives another valid grid.
OTHER = np.array([1, 2, 4, 3, 3, 4, 2, 1, 2, 1, 3, 4, 4, 3, 1, 2])


def _evaluator(tmp_path, ratings=None, buckets=(0, 10)):
    if ratings is not None:
        np.save(tmp_path / RATINGS_FILE, np.asarray(ratings))
    meta = DatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=6, seq_len=16,
                           num_puzzle_identifiers=1, total_groups=4, mean_puzzle_examples=1.0, sets=["all"])
    evaluator = SudokuEvaluator(SudokuEvalConfig(rating_buckets=list(buckets)),
                                EvalContext(metadata=meta, data_dir=tmp_path, output_dir=tmp_path))
    evaluator.begin_eval()
    return evaluator


def _batch(puzzles, solutions, preds, valid=None):
    rows = len(puzzles)
    return ({"inputs": torch.from_numpy(to_tokens(np.stack(puzzles))).int(),
             "labels": torch.from_numpy(to_tokens(np.stack(solutions))).long(),
             "index": torch.arange(rows), "valid": torch.ones(rows, dtype=torch.bool) if valid is None else valid},
            {"preds": torch.from_numpy(to_tokens(np.stack(preds))).long()})


def test_metrics_on_hand_made_predictions(tmp_path):
    ambiguous = SOLUTION * np.isin(np.arange(16), [0, 1, 4, 5, 8, 9, 12, 13])  # last two columns blank
    wrong = SOLUTION.copy()
    wrong[[2, 3]] = [3, 3]                                    # one wrong cell, a repeated digit
    changes_given = OTHER.copy()                              # valid grid, but given 1 at cell 0 ...
    changes_given[[0, 1, 4, 5, 8, 9, 12, 13]] = [2, 1, 4, 3, 1, 2, 3, 4]  # ... swapped to another valid grid
    puzzles = [ambiguous, ambiguous, ambiguous, ambiguous]
    preds = [SOLUTION, wrong, OTHER, changes_given]
    evaluator = _evaluator(tmp_path, ratings=[0, 0, 20, 20])
    evaluator.update_batch(*_batch(puzzles, [SOLUTION] * 4, preds))
    result = evaluator.result()
    assert result["count"] == 4
    assert result["exact_accuracy"] == 0.25
    assert result["valid_solution"] == 0.5                    # the label and OTHER; not wrong nor changes_given
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
    broken = np.zeros(16, dtype=np.int64)                     # pad tokens are no digits
    batch, outputs = _batch([puzzle, puzzle], [SOLUTION, SOLUTION], [SOLUTION, broken],
                            valid=torch.tensor([True, False]))
    evaluator.update_batch(batch, outputs)
    result = evaluator.result()
    assert result["count"] == 1 and result["exact_accuracy"] == 1.0 and result["valid_solution"] == 1.0
    assert not any("/rating_" in key for key in result)       # no ratings file, no buckets
    evaluator.begin_eval()
    batch, outputs = _batch([puzzle], [SOLUTION], [broken])
    evaluator.update_batch(batch, outputs)
    assert evaluator.result()["valid_solution"] == 0.0
