"""Solver: correct unique solutions on the shared collections, several/no solutions,
guess counts, and parallel labelling in input order."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
from rr_sudoku.grid import valid_solutions
from rr_sudoku.reader import read_puzzles
from rr_sudoku.solver import label, label_many, parallel_map


def _sample(path, count, seed=0):
    puzzles = read_puzzles(path).puzzles
    rows = np.random.default_rng(seed).choice(len(puzzles), count, replace=False)
    return puzzles[rows]


def test_shared_files_solve_uniquely(shared_sudoku):
    puzzles = np.concatenate(
        [
            _sample(shared_sudoku / "puzzles2_17_clue.txt", 200),
            _sample(shared_sudoku / "puzzles5_forum_hardest_1905_11+.txt", 40),
        ]
    )
    labels = label_many(puzzles, jobs=2, chunk_size=16)
    assert (labels.solutions == 1).all()
    assert valid_solutions(puzzles, labels.grids, 9).all()
    # The 11+ file is far harder for the solver than 17-clue puzzles.
    assert np.median(labels.guesses[200:]) > 10 * max(np.median(labels.guesses[:200]), 1)


def test_parallel_labels_match_serial(shared_sudoku):
    puzzles = _sample(shared_sudoku / "puzzles6_forum_hardest_1106.txt", 12, seed=1)
    serial, parallel = label_many(puzzles, jobs=1), label_many(puzzles, jobs=2, chunk_size=3)
    assert np.array_equal(serial.grids, parallel.grids)
    assert np.array_equal(serial.guesses, parallel.guesses)


def test_several_and_no_solutions():
    empty = np.zeros(81, dtype=np.uint8)
    assert label(empty).solutions == 2
    contradiction = empty.copy()
    contradiction[:8] = np.arange(1, 9)
    contradiction[9 * 4 + 8] = 9  # row 0's last cell can only be 9, but 9 sits in its column
    assert label(contradiction).solutions == 0


def test_four_by_four_and_singles_need_no_guess():
    solution = np.array([1, 2, 3, 4, 3, 4, 1, 2, 2, 1, 4, 3, 4, 3, 2, 1], dtype=np.uint8)
    puzzle = solution.copy()
    puzzle[[0, 5, 10, 15]] = 0
    found = label(puzzle)
    assert found.unique and found.guesses == 0 and np.array_equal(found.solution, solution)


def _square_or_refuse(number: int) -> int:
    if number == 5:
        raise ValueError("five refused")
    return number * number


def test_parallel_map_keeps_order_errors_and_stops_its_workers():
    with parallel_map(_square_or_refuse, list(range(5)), jobs=2) as results:
        assert list(results) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError, match="five refused"), parallel_map(_square_or_refuse, list(range(9)), 3) as results:
        list(results)  # the worker's own exception, as if raised here
    with parallel_map(_square_or_refuse, list(range(4)), 2) as results:
        next(results)
        workers = [child.pid for child in multiprocessing.active_children()]
    assert workers and not any(child.pid in workers for child in multiprocessing.active_children())
