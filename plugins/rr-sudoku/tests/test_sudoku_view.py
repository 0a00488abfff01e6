"""The report's Sudoku view: a grid with its boxes, givens bold, answer cells marked by position."""

from __future__ import annotations

import numpy as np
from rr_sudoku import plugin
from rr_sudoku.grid import to_tokens

from rrcore.contracts.registry import load_registry
from rrcore.contracts.views import TokenView, puzzle_view


def test_sudoku_view_draws_the_grid_with_givens_and_positions():
    registry = load_registry(entry_point_group=None, extra_modules=[plugin])
    view = puzzle_view(registry, "sudoku", type("M", (), {"seq_len": 16})())
    puzzle = to_tokens(np.array([1, 0, 0, 4, 0, 0, 1, 0, 0, 1, 0, 0, 4, 0, 0, 1]))
    [grid] = view.draw_input(puzzle)
    assert [[cell.text for cell in row] for row in grid.rows][0] == ["1", "", "", "4"]
    assert grid.block == 2 and all(cell.position is None for cell in grid.cells())
    assert [cell.given for cell in grid.cells()][:4] == [True, False, False, True]
    answer = to_tokens(np.array([1, 2, 3, 4] * 4))
    [drawn] = view.draw_answer(answer, puzzle, answer)
    assert [cell.position for cell in drawn.cells()] == list(range(16))
    assert isinstance(puzzle_view(registry, "maze", None), TokenView)  # not Sudoku's to draw
    assert isinstance(TokenView().draw_answer(answer, puzzle, answer)[0].rows[0][0].text, str)
