"""How ``rr report`` draws a Sudoku: the grid with its boxes, givens in bold."""

from __future__ import annotations

import numpy as np

from rr_sudoku.grid import BLANK_TOKEN, DIGIT_OFFSET, geometry, size_of_length
from rrcore.api import DatasetMetadata, Panel, token_panel


class SudokuView:
    """:class:`rrcore.contracts.views.PuzzleView` for Sudoku tokens (0 pad, 1 blank, digit + 1)."""

    def __init__(self, metadata: DatasetMetadata) -> None:
        self.size = size_of_length(metadata.seq_len)
        self.box = geometry(self.size).box
        # Text of each token: pad and blank empty, digits as themselves; no other token exists.
        self.text = ["", ""] + [str(d) for d in range(1, self.size + 1)]

    def draw_input(self, inputs: np.ndarray) -> list[Panel]:
        return [
            token_panel(
                "puzzle",
                inputs,
                answer=False,
                text=self.text,
                shape=(self.size, self.size),
                block=self.box,
                given=inputs > BLANK_TOKEN,
            )
        ]

    def draw_answer(self, answer: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> list[Panel]:
        return [
            token_panel(
                "grid",
                answer,
                answer=True,
                text=self.text,
                shape=(self.size, self.size),
                block=self.box,
                given=inputs >= BLANK_TOKEN + DIGIT_OFFSET,
            )
        ]
