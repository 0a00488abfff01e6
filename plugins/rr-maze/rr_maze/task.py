"""Single mazes for ``rr solve``, readable predictions and test-time selection.

A maze is typed as its text grid, one line per row in the characters of the data
set (``#`` wall, space open, ``S`` start, ``G`` goal), or as one line of all rows
concatenated (the CSV layout). The answer marks a path with ``o``; the check
accepts any shortest start-to-goal path. Test-time augmentations are the
symmetries of the square that keep the grid's shape, undone on the prediction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rr_maze.evaluator import grid_shape, valid_optimal_paths
from rr_maze.maze import CHARSET, GOAL, PATH, START, render, shortest_path_lengths, to_text
from rrcore.api import Check, PuzzleError, dihedral, inverse_dihedral, shape_preserving_transforms

_TOKENS = {char: index + 1 for index, char in enumerate(CHARSET) if char != "o"}


class MazeTask:
    """The ``maze`` :class:`rrcore.contracts.protocols.PuzzleTask` for the data set's grid shape."""

    def __init__(self, data_config: Any, metadata: Any) -> None:
        self.height, self.width = grid_shape(metadata)
        self.transforms = shape_preserving_transforms(self.height, self.width)
        self.augmentations = len(self.transforms)

    def parse(self, text: str) -> np.ndarray:
        """Input tokens of a typed maze; :class:`PuzzleError` says what is wrong."""
        rows = [row.rstrip("\r") for row in text.split("\n")]
        while rows and not rows[-1]:
            rows.pop()
        if not rows:
            raise PuzzleError("the maze is empty")
        if len(rows) == 1 and len(rows[0]) == self.height * self.width:
            rows = [rows[0][r * self.width : (r + 1) * self.width] for r in range(self.height)]
        if len(rows) != self.height:
            raise PuzzleError(f"{len(rows)} rows; this model solves {self.height}x{self.width} mazes")
        for number, row in enumerate(rows, start=1):
            if len(row) != self.width:
                raise PuzzleError(f"row {number} has {len(row)} cells; the maze is {self.width} wide")
            bad = next((c for c in row if c not in _TOKENS), None)
            if bad is not None:
                raise PuzzleError(
                    f"row {number}: bad character {bad!r} at column {row.index(bad) + 1} "
                    f"(expected '#', ' ', 'S' or 'G')"
                )
        grid = np.array([[_TOKENS[c] for c in row] for row in rows], dtype=np.uint8)
        for token, name in ((START, "S (start)"), (GOAL, "G (goal)")):
            found = int((grid == token).sum())
            if found != 1:
                raise PuzzleError(f"{found} cells are {name}; a maze has exactly one")
        if shortest_path_lengths(grid[None])[0] <= 0:
            raise PuzzleError("no path leads from S to G")
        return grid.reshape(-1)

    def decode(self, tokens: np.ndarray) -> str:
        """The maze as one line, rows concatenated (``?`` for a predicted pad)."""
        return to_text(tokens)

    def render(self, tokens: np.ndarray) -> str:
        return render(np.asarray(tokens).reshape(self.height, self.width))

    def check(self, inputs: np.ndarray, prediction: np.ndarray) -> Check:
        """A valid shortest path: the ``o`` cells join S to G through open cells in the fewest moves."""
        grid = np.asarray(inputs).reshape(1, self.height, self.width)
        shortest = int(shortest_path_lengths(grid)[0])
        answer = torch.as_tensor(np.asarray(prediction).astype(np.int64).reshape(1, self.height, self.width))
        ok = bool(valid_optimal_paths(torch.as_tensor(grid.astype(np.int64)), answer, torch.tensor([shortest]))[0])
        marked = int((answer == PATH).sum())
        if ok:
            return Check(True, f"a shortest path from S to G: {shortest} moves")
        return Check(
            False,
            f"the {marked} marked cells are not a shortest path from S to G "
            f"({shortest} moves, {shortest - 1} cells between them)",
        )

    def augment(self, inputs: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        """(N, count, cells): copy 0 unchanged, the others under distinct symmetries (repeating
        once all are used)."""
        others = [t for t in self.transforms if t != 0]
        drawn = rng.permutation(len(others))
        order = [0] + [others[drawn[i % len(others)]] for i in range(count - 1)]
        grids = np.asarray(inputs).reshape(-1, self.height, self.width)
        copies = np.stack([dihedral(grids, t) for t in order[:count]], axis=1)
        return copies.reshape(grids.shape[0], count, -1), order[:count]

    def invert(self, predictions: np.ndarray, state: Any) -> np.ndarray:
        grids = np.asarray(predictions).reshape(predictions.shape[0], -1, self.height, self.width)
        back = np.stack([inverse_dihedral(grids[:, k], t) for k, t in enumerate(state)], axis=1)
        return back.reshape(predictions.shape)
