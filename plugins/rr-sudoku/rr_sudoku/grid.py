"""Grid geometry and the token layout shared by the builder and the evaluator.

A grid of box size ``b`` has ``n = b * b`` rows, columns, boxes and digits and
``n * n`` cells in row-major order. Grids are held as digit arrays: 0 for a blank
cell, 1..n for a digit.

Tokens follow the HRM/TRM/URM Sudoku builders: 0 pad, 1 blank, ``digit + 1`` for
digits (2..10 for 9x9, 2..5 for 4x4), so the vocabulary has ``n + 2`` entries
(11 for 9x9, 6 for 4x4) and data sets built by the references load unchanged.
"""

from __future__ import annotations

import functools
import math

import attrs
import numpy as np

PAD_TOKEN = 0
BLANK_TOKEN = 1
DIGIT_OFFSET = 1
"""Token of digit ``d`` is ``d + DIGIT_OFFSET``; a blank (digit 0) becomes ``BLANK_TOKEN``."""

BOX_OF_SIZE = {4: 2, 9: 3}
"""Supported grid sizes (side length) and their box size."""


@attrs.frozen
class Geometry:
    """Cells, units and peers of an ``n x n`` grid with ``b x b`` boxes.

    ``units`` lists the rows, then the columns, then the boxes (cell indices);
    ``peers[c]`` holds every other cell sharing a unit with cell ``c``;
    ``full`` is the bitmask of all digits (bit ``d - 1`` for digit ``d``).
    """

    box: int
    size: int
    cells: int
    units: tuple[tuple[int, ...], ...]
    peers: tuple[tuple[int, ...], ...]
    full: int

    @property
    def vocab_size(self) -> int:
        return self.size + 1 + DIGIT_OFFSET


@functools.cache
def geometry(size: int) -> Geometry:
    """The geometry of a ``size x size`` grid (4 or 9)."""
    if size not in BOX_OF_SIZE:
        raise ValueError(f"unsupported Sudoku size {size}; supported: {sorted(BOX_OF_SIZE)}")
    box = BOX_OF_SIZE[size]
    n = size
    rows = [tuple(r * n + c for c in range(n)) for r in range(n)]
    cols = [tuple(r * n + c for r in range(n)) for c in range(n)]
    boxes = [
        tuple((br * box + r) * n + bc * box + c for r in range(box) for c in range(box))
        for br in range(box)
        for bc in range(box)
    ]
    units = tuple(rows + cols + boxes)
    peers = tuple(tuple(sorted({p for unit in units if cell in unit for p in unit} - {cell})) for cell in range(n * n))
    return Geometry(box=box, size=n, cells=n * n, units=units, peers=peers, full=(1 << n) - 1)


def size_of_length(length: int) -> int:
    """Grid size for a puzzle of ``length`` cells (16 -> 4, 81 -> 9)."""
    size = math.isqrt(length)
    if size * size != length or size not in BOX_OF_SIZE:
        raise ValueError(f"{length} cells is no supported Sudoku (16 for 4x4, 81 for 9x9)")
    return size


def to_tokens(digits: np.ndarray) -> np.ndarray:
    """Digit grids (0 blank) to tokens (1 blank, digit + 1), as uint8."""
    digits = np.asarray(digits)
    return np.where(digits == 0, BLANK_TOKEN, digits + DIGIT_OFFSET).astype(np.uint8)


def from_tokens(tokens: np.ndarray) -> np.ndarray:
    """Tokens back to digits (pad and blank become 0)."""
    tokens = np.asarray(tokens).astype(np.int64)
    return np.where(tokens > BLANK_TOKEN, tokens - DIGIT_OFFSET, 0)


def valid_solutions(puzzles: np.ndarray, solutions: np.ndarray, size: int) -> np.ndarray:
    """Which rows of ``solutions`` (N, cells) fill every cell with 1..size, satisfy every
    unit and keep the givens of ``puzzles`` (N, cells); vectorised over rows."""
    geo = geometry(size)
    puzzles = np.asarray(puzzles).reshape(-1, geo.cells)
    solutions = np.asarray(solutions).reshape(-1, geo.cells)
    units = np.sort(solutions[:, np.asarray(geo.units)], axis=-1)  # (N, units, size)
    complete = (units == np.arange(1, size + 1)).all(axis=(1, 2))
    keeps_givens = ((puzzles == 0) | (puzzles == solutions)).all(axis=1)
    return complete & keeps_givens


def is_valid_solution(puzzle: np.ndarray, solution: np.ndarray, size: int | None = None) -> bool:
    """Whether ``solution`` fills every cell, satisfies every unit and keeps ``puzzle``'s givens."""
    solution = np.asarray(solution).reshape(-1)
    size = size or size_of_length(solution.size)
    if solution.size != size * size:
        return False
    return bool(valid_solutions(puzzle, solution, size)[0])


def givens_conflict(puzzle: np.ndarray, size: int) -> str | None:
    """A description of two equal givens in one unit, or None when the givens agree."""
    geo = geometry(size)
    puzzle = np.asarray(puzzle).reshape(-1)
    kinds = ("row", "column", "box")
    for index, unit in enumerate(geo.units):
        values = puzzle[list(unit)]
        values = values[values != 0]
        if len(values) != len(set(values.tolist())):
            repeated = int(np.bincount(values).argmax())
            return f"digit {repeated} repeats in {kinds[index // geo.size]} {index % geo.size + 1}"
    return None
