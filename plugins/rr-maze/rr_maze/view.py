"""How ``rr report`` draws a maze: walls dark, start green, goal red, the path in amber."""

from __future__ import annotations

import math

import numpy as np

from rr_maze.maze import GOAL, OPEN, PAD, PATH, START, WALL
from rrcore.api import DatasetMetadata, Panel, token_panel

COLOURS = {PAD: "#eeeeee", WALL: "#2b2b2b", OPEN: "#ffffff", START: "#2ca02c", GOAL: "#d62728", PATH: "#ffb000"}
"""Background of each token."""


class MazeView:
    """:class:`rrcore.contracts.views.PuzzleView` for square maze grids (tokens of :mod:`rr_maze.maze`)."""

    def __init__(self, metadata: DatasetMetadata) -> None:
        seq_len = metadata.seq_len
        side = math.isqrt(seq_len)
        self.shape = (side, side) if side * side == seq_len else (1, seq_len)
        self.colours = [COLOURS.get(token) for token in range(max(COLOURS) + 1)]
        self.text = [""] * len(self.colours)

    def draw_input(self, inputs: np.ndarray) -> list[Panel]:
        return [token_panel("maze", inputs, answer=False, text=self.text, colours=self.colours, shape=self.shape)]

    def draw_answer(self, answer: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> list[Panel]:
        return [token_panel("path", answer, answer=True, text=self.text, colours=self.colours, shape=self.shape)]
