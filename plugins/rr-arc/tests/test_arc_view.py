"""The report's ARC view: canvases cropped to their grids, cells in the ARC colours."""

from __future__ import annotations

import numpy as np
from rr_arc import plugin
from rr_arc.grids import MAX_GRID_SIZE, encode
from rr_arc.view import ARC_COLOURS

from rrcore.contracts.registry import load_registry
from rrcore.contracts.views import puzzle_view


def test_arc_view_crops_to_the_grid_and_uses_arc_colours():
    view = puzzle_view(load_registry(entry_point_group=None, extra_modules=[plugin]), "arc", None)
    grid = np.array([[0, 1, 2], [3, 4, 5]])
    canvas = encode(grid, offset=(4, 7)).reshape(-1)
    [shown] = view.draw_input(canvas)
    assert len(shown.rows) == 3 and len(shown.rows[0]) == 4  # the grid and its EOS row and column
    assert [cell.colour for cell in shown.rows[0][:3]] == [ARC_COLOURS[0], ARC_COLOURS[1], ARC_COLOURS[2]]
    [answer] = view.draw_answer(canvas, canvas, canvas)
    assert answer.rows[1][2].position == 5 * MAX_GRID_SIZE + 9  # row 1, column 2 of the grid at (4, 7)
    assert answer.rows[0][3].text == "·"  # the EOS column
