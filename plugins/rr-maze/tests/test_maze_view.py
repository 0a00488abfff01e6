"""The report's maze view: walls, start, goal and path in their colours."""

from __future__ import annotations

import numpy as np
from rr_maze import plugin
from rr_maze.maze import GOAL, OPEN, PATH, START, WALL
from rr_maze.view import COLOURS

from rrcore.contracts.registry import load_registry
from rrcore.contracts.views import puzzle_view


def test_maze_view_colours_walls_start_goal_and_path():
    registry = load_registry(entry_point_group=None, extra_modules=[plugin])
    view = puzzle_view(registry, "maze", type("M", (), {"seq_len": 9})())
    maze = np.array([START, OPEN, WALL, WALL, OPEN, WALL, WALL, OPEN, GOAL])
    path = np.where(maze == OPEN, PATH, maze)
    [drawn] = view.draw_answer(path, maze, path)
    colours = [[cell.colour for cell in row] for row in drawn.rows]
    assert colours[0] == [COLOURS[START], COLOURS[PATH], COLOURS[WALL]]
    assert colours[2][2] == COLOURS[GOAL]
    assert [cell.position for cell in drawn.cells()] == list(range(9))
    assert all(cell.position is None for cell in view.draw_input(maze)[0].cells())
