"""Single Sudoku puzzles for ``rr solve``, readable predictions and test-time selection.

A puzzle is typed as one line of 81 (9x9) or 16 (4x4) characters, ``.`` or ``0`` for a
blank, or as a grid of 9 (4) lines; spaces and the ``|``, ``+`` and ``-`` of drawn box
borders are ignored, and so is a ``#`` comment. The size must be the model's.
Test-time augmentations are the symmetries of :mod:`rr_sudoku.augment` (digits,
bands, rows, stacks, columns, transpose), each undone on the prediction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rr_sudoku.augment import random_transforms
from rr_sudoku.grid import from_tokens, geometry, givens_conflict, size_of_length, to_tokens
from rr_sudoku.reader import parse_grid
from rrcore.api import Check, PuzzleError

_BORDERS = str.maketrans("", "", " \t|+-")
_SHOWN = ".123456789"


class SudokuTask:
    """The ``sudoku`` :class:`rrcore.contracts.protocols.PuzzleTask` for the model's grid size."""

    def __init__(self, data_config: Any, metadata: Any) -> None:
        self.size = size_of_length(metadata.seq_len)
        self.geometry = geometry(self.size)
        box = self.geometry.box
        # Digit relabellings x band/row x stack/column orders x transpose.
        lines = math.factorial(box) ** (box + 1)
        self.augmentations = math.factorial(self.size) * lines * lines * 2

    def parse(self, text: str) -> np.ndarray:
        """Input tokens of a typed puzzle; :class:`PuzzleError` says what is wrong."""
        rows = [line.split("#", 1)[0].translate(_BORDERS) for line in text.splitlines()]
        rows = [row for row in rows if row]
        if not rows:
            raise PuzzleError("the puzzle is empty")
        cells = self.geometry.cells
        if len(rows) > 1 and len(rows) != self.size:
            raise PuzzleError(f"{len(rows)} rows; a {self.size}x{self.size} grid has {self.size}")
        for number, row in enumerate(rows if len(rows) > 1 else [], start=1):
            if len(row) != self.size:
                raise PuzzleError(f"row {number} has {len(row)} cells; a {self.size}x{self.size} grid has {self.size}")
        text = "".join(rows)
        if len(text) != cells:
            other = {16: "4x4", 81: "9x9"}.get(len(text))
            hint = f" (a {other} puzzle)" if other else ""
            raise PuzzleError(
                f"{len(text)} cells{hint}; this model solves {self.size}x{self.size} Sudoku, {cells} cells"
            )
        try:
            digits = parse_grid(text, self.size)
        except ValueError as error:
            raise PuzzleError(str(error).replace("column", "cell")) from None
        conflict = givens_conflict(digits, self.size)
        if conflict:
            raise PuzzleError(f"contradictory givens: {conflict}")
        return to_tokens(digits)

    def decode(self, tokens: np.ndarray) -> str:
        """The puzzle line: digits, ``.`` for a blank (or a predicted token that is no digit)."""
        return "".join(_SHOWN[d] for d in self._digits(tokens))

    def render(self, tokens: np.ndarray) -> str:
        """The grid over lines, boxes drawn with ``|`` and ``-``."""
        digits = self._digits(tokens).reshape(self.size, self.size)
        box = self.geometry.box
        lines = []
        for r, row in enumerate(digits):
            if r and r % box == 0:
                lines.append("+".join(["-" * (2 * box + 1)] * box)[1:-1])
            cells = [_SHOWN[d] for d in row]
            lines.append(" | ".join(" ".join(cells[c : c + box]) for c in range(0, self.size, box)))
        return "\n".join(lines)

    def check(self, inputs: np.ndarray, prediction: np.ndarray) -> Check:
        """Sudoku rules: every cell a digit, no digit twice in a unit, the givens kept."""
        puzzle, answer = self._digits(inputs), self._digits(prediction)
        blank = np.flatnonzero(answer == 0)
        if blank.size:
            r, c = divmod(int(blank[0]), self.size)
            return Check(False, f"{blank.size} cells without a digit (first: row {r + 1}, column {c + 1})")
        changed = np.flatnonzero((puzzle != 0) & (puzzle != answer))
        if changed.size:
            r, c = divmod(int(changed[0]), self.size)
            return Check(False, f"changes the given {puzzle[changed[0]]} at row {r + 1}, column {c + 1}")
        conflict = givens_conflict(answer, self.size)
        if conflict:
            return Check(False, conflict)
        return Check(True, f"every row, column and box holds 1-{self.size} once; givens kept")

    def augment(self, inputs: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        """(N, count, cells) transformed puzzles (copy 0 unchanged) and the transforms."""
        inputs = np.asarray(inputs)
        n = inputs.shape[0]
        sources, digit_maps = random_transforms(n * count, self.size, rng)
        sources = sources.reshape(n, count, -1)
        digit_maps = digit_maps.reshape(n, count, -1)
        sources[:, 0] = np.arange(self.geometry.cells)
        digit_maps[:, 0] = np.arange(self.size + 1)
        digits = self._digits(inputs)[:, None, :].repeat(count, axis=1)  # (N, count, cells)
        moved = np.take_along_axis(digits, sources, axis=2)
        mapped = np.take_along_axis(digit_maps, moved, axis=2)
        return to_tokens(mapped), (sources, digit_maps)

    def invert(self, predictions: np.ndarray, state: Any) -> np.ndarray:
        """Predictions of the copies (N, count, cells) in the original puzzles' frame."""
        sources, digit_maps = state
        digits = self._digits(predictions)
        inverse_maps = np.zeros_like(digit_maps)
        np.put_along_axis(inverse_maps, digit_maps, np.arange(self.size + 1)[None, None, :], axis=2)
        unmapped = np.take_along_axis(inverse_maps, digits, axis=2)
        original = np.zeros_like(unmapped)
        np.put_along_axis(original, sources, unmapped, axis=2)
        return to_tokens(original)

    def _digits(self, tokens: np.ndarray) -> np.ndarray:
        digits = from_tokens(tokens)
        return np.where(digits <= self.size, digits, 0)
