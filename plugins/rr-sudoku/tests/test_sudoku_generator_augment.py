"""Generator uniqueness, targets and determinism; augmentation validity."""

from __future__ import annotations

import numpy as np
import pytest
from rr_sudoku.augment import augment
from rr_sudoku.generator import DifficultyTarget, GenerationError, generate_many, generate_puzzle
from rr_sudoku.grid import valid_solutions
from rr_sudoku.solver import label


@pytest.mark.parametrize("size", [4, 9])
def test_generated_puzzles_are_unique_and_deterministic(size):
    puzzles, solutions, guesses = generate_many(size, 6, seed=3, jobs=1)
    again = generate_many(size, 6, seed=3, jobs=2)
    assert np.array_equal(puzzles, again[0]) and np.array_equal(guesses, again[2])
    assert not np.array_equal(puzzles, generate_many(size, 6, seed=4, jobs=1)[0])
    assert valid_solutions(puzzles, solutions, size).all()
    for puzzle, solution, rating in zip(puzzles, solutions, guesses, strict=True):
        found = label(puzzle)
        assert found.unique and np.array_equal(found.solution, solution) and found.guesses == rating


def test_generator_meets_givens_and_guess_targets():
    puzzle, _, _ = generate_puzzle(9, seed=0, target=DifficultyTarget(givens=32))
    assert np.count_nonzero(puzzle) == 32
    _, _, guesses = generate_puzzle(9, seed=0, target=DifficultyTarget(min_guesses=5))
    assert guesses >= 5
    with pytest.raises(GenerationError, match="no 4x4 puzzle"):
        generate_puzzle(4, seed=0, target=DifficultyTarget(min_guesses=50, max_attempts=3))


@pytest.mark.parametrize("size", [4, 9])
def test_augmentations_stay_valid_puzzle_solution_pairs(size):
    puzzles, solutions, _ = generate_many(size, 3, seed=0, jobs=1)
    rng = np.random.default_rng(0)
    for puzzle, solution in zip(puzzles, solutions, strict=True):
        more_puzzles, more_solutions = augment(puzzle, solution, 200, rng)
        assert valid_solutions(more_puzzles, more_solutions, size).all()
        # Givens move with their cells: the number of givens is kept.
        assert (np.count_nonzero(more_puzzles, axis=1) == np.count_nonzero(puzzle)).all()
        assert len({p.tobytes() for p in more_puzzles}) > 50  # the draws really differ
        for augmented, answer in zip(more_puzzles[:5], more_solutions[:5], strict=True):
            assert np.array_equal(label(augmented).solution, answer)
