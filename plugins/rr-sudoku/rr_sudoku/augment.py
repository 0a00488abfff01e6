"""Validity-preserving Sudoku augmentations, vectorised over many draws.

Each draw combines the symmetries of the Sudoku constraints: a relabelling of the
digits (blank stays blank), a permutation of the bands (groups of ``b`` rows) and
of the rows within each band, the same for stacks and columns, and a transpose
with probability 1/2. Applying one draw to a puzzle and its solution gives
another puzzle/solution pair.
"""

from __future__ import annotations

import numpy as np

from rr_sudoku.grid import geometry


def _line_permutations(count: int, box: int, rng: np.random.Generator) -> np.ndarray:
    """(count, box*box) row (or column) orders: permuted bands of permuted rows."""
    bands = np.argsort(rng.random((count, box)), axis=1)  # (count, box)
    within = np.argsort(rng.random((count, box, box)), axis=2)  # (count, box, box)
    return (bands[:, :, None] * box + within).reshape(count, box * box)


def random_transforms(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random symmetries as ``(sources, digit_maps)``.

    ``sources`` (count, cells): cell ``i`` of a transformed grid is cell
    ``sources[k, i]`` of the original; ``digit_maps`` (count, size + 1): digit ``d``
    becomes ``digit_maps[k, d]`` (``digit_maps[:, 0] == 0`` keeps blanks blank).
    """
    geo = geometry(size)
    rows = _line_permutations(count, geo.box, rng)
    cols = _line_permutations(count, geo.box, rng)
    sources = rows[:, :, None] * size + cols[:, None, :]  # (count, size, size)
    transpose = rng.random(count) < 0.5
    sources = np.where(transpose[:, None, None], sources.transpose(0, 2, 1), sources)
    digits = 1 + np.argsort(rng.random((count, size)), axis=1)
    digit_maps = np.concatenate([np.zeros((count, 1), dtype=digits.dtype), digits], axis=1)
    return sources.reshape(count, geo.cells), digit_maps


def apply_transforms(grids: np.ndarray, sources: np.ndarray, digit_maps: np.ndarray) -> np.ndarray:
    """Apply every transform to one digit grid (cells,): returns (count, cells) uint8."""
    moved = np.asarray(grids)[sources]  # (count, cells)
    return np.take_along_axis(digit_maps, moved.astype(np.int64), axis=1).astype(np.uint8)


def augment(
    puzzle: np.ndarray, solution: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` augmented copies of a puzzle and its solution, transformed alike."""
    puzzle = np.asarray(puzzle).reshape(-1)
    size = int(round(puzzle.size**0.5))
    sources, digit_maps = random_transforms(count, size, rng)
    return apply_transforms(puzzle, sources, digit_maps), apply_transforms(solution, sources, digit_maps)
