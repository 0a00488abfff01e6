"""Maze generation, labels, symmetries and the CSV reader, checked with an independent BFS."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from rr_maze.maze import (
    GOAL,
    OPEN,
    PATH,
    START,
    WALL,
    MazeSettings,
    generate_mazes,
    render,
    to_text,
)
from rr_maze.reader import MazeDataError, read_maze_csv

from rrcore.api import dihedral


def bfs_length(grid: np.ndarray) -> int:
    """Shortest start-to-goal moves by a plain queue BFS (independent of rr_maze's numpy BFS)."""
    height, width = grid.shape
    start = tuple(np.argwhere(grid == START)[0])
    seen = {start: 0}
    queue = deque([start])
    while queue:
        row, col = queue.popleft()
        if grid[row, col] == GOAL:
            return seen[(row, col)]
        for d_row, d_col in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nxt = (row + d_row, col + d_col)
            if 0 <= nxt[0] < height and 0 <= nxt[1] < width and grid[nxt] != WALL and nxt not in seen:
                seen[nxt] = seen[(row, col)] + 1
                queue.append(nxt)
    return -1


def assert_label_is_a_shortest_path(grid: np.ndarray, label: np.ndarray) -> None:
    """The label equals the input off the path, and its path cells walk S -> G in the optimal length."""
    path = label == PATH
    assert np.array_equal(np.where(path, grid, label), grid)
    assert np.all(grid[path] == OPEN)
    length = bfs_length(grid)
    assert length > 0 and path.sum() == length - 1
    # Walk from S along unvisited path cells; with length - 1 cells it must reach G.
    position = tuple(np.argwhere(grid == START)[0])
    remaining = {tuple(cell) for cell in np.argwhere(path)}
    for _ in range(length - 1):
        steps = [(position[0] + dr, position[1] + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))]
        following = [cell for cell in steps if cell in remaining]
        assert len(following) == 1, "the path forks or breaks"
        position = following[0]
        remaining.remove(position)
    assert any(grid[position[0] + dr, position[1] + dc] == GOAL for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)))


@pytest.fixture(scope="module")
def mazes():
    return generate_mazes(40, MazeSettings(), np.random.default_rng(7))


def test_generated_mazes_are_connected_hard_and_labelled_with_a_shortest_path(mazes):
    inputs, labels = mazes
    assert inputs.shape == labels.shape == (40, 30, 30)
    for grid, label in zip(inputs, labels):
        assert (grid == START).sum() == 1 and (grid == GOAL).sum() == 1
        assert set(np.unique(grid)) <= {WALL, OPEN, START, GOAL}
        assert bfs_length(grid) > 110  # the default hard threshold
        assert_label_is_a_shortest_path(grid, label)


def test_hard_threshold_and_grid_size_are_configurable():
    settings = MazeSettings(width=15, height=11, hard_threshold=30, loop_fraction=0.1)
    inputs, labels = generate_mazes(20, settings, np.random.default_rng(0))
    assert inputs.shape == (20, 11, 15)
    for grid, label in zip(inputs, labels):
        assert bfs_length(grid) > 30
        assert_label_is_a_shortest_path(grid, label)
    with pytest.raises(ValueError, match="lower hard_threshold"):
        generate_mazes(1, MazeSettings(width=7, height=7, hard_threshold=100), np.random.default_rng(0))


def test_loops_give_some_mazes_several_shortest_paths():
    """With the default loop fraction, alternative shortest paths exist (what the evaluator must accept)."""
    inputs, _ = generate_mazes(60, MazeSettings(), np.random.default_rng(1))
    several = 0
    for grid in inputs:
        open_ = grid != WALL
        # Cells on some shortest path: distance from S + distance to G == shortest length.
        from_start = _distances(open_, grid == START)
        to_goal = _distances(open_, grid == GOAL)
        length = bfs_length(grid)
        on_some_path = (from_start >= 0) & (to_goal >= 0) & (from_start + to_goal == length)
        several += on_some_path.sum() > length + 1
    assert several > 0


def _distances(open_: np.ndarray, sources: np.ndarray) -> np.ndarray:
    distance = np.full(open_.shape, -1)
    queue = deque(tuple(c) for c in np.argwhere(sources))
    for cell in queue:
        distance[cell] = 0
    while queue:
        row, col = queue.popleft()
        for d_row, d_col in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            r, c = row + d_row, col + d_col
            if 0 <= r < open_.shape[0] and 0 <= c < open_.shape[1] and open_[r, c] and distance[r, c] < 0:
                distance[r, c] = distance[row, col] + 1
                queue.append((r, c))
    return distance


def test_generation_is_deterministic_per_seed():
    settings = MazeSettings()
    first = generate_mazes(5, settings, np.random.default_rng(11))
    again = generate_mazes(5, settings, np.random.default_rng(11))
    other = generate_mazes(5, settings, np.random.default_rng(12))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])


def test_dihedral_transforms_keep_labels_optimal_paths(mazes):
    inputs, labels = mazes
    seen = set()
    for transform in range(8):
        grid, label = dihedral(inputs[0], transform), dihedral(labels[0], transform)
        assert_label_is_a_shortest_path(grid, label)
        assert bfs_length(grid) == bfs_length(inputs[0])
        seen.add(grid.tobytes())
    assert len(seen) == 8  # eight different mazes, not one repeated
    # Batched transforms act on the last two axes, like one grid at a time.
    assert np.array_equal(dihedral(inputs[:3], 5)[1], dihedral(inputs[1], 5))


def test_csv_reader_round_trips_the_hub_layout(tmp_path, mazes):
    inputs, labels = mazes
    path = tmp_path / "test.csv"
    rows = ["source,question,answer,rating"]
    rows += [
        f"gen{i},{to_text(q)},{to_text(a)},{bfs_length(q)}" for i, (q, a) in enumerate(zip(inputs[:5], labels[:5]))
    ]
    path.write_text("\n".join(rows) + "\n")
    read = read_maze_csv(path)
    assert np.array_equal(read.inputs, inputs[:5]) and np.array_equal(read.labels, labels[:5])
    assert read.sources == [f"gen{i}" for i in range(5)]
    assert read.ratings.tolist() == [bfs_length(q) for q in inputs[:5]]
    assert render(inputs[0]).splitlines()[0] == to_text(inputs[0])[:30]


def test_csv_reader_names_the_bad_row(tmp_path, mazes):
    inputs, labels = mazes
    good = f"x,{to_text(inputs[0])},{to_text(labels[0])},120"
    bad = f"y,{to_text(inputs[1]).replace('#', 'X', 1)},{to_text(labels[1])},120"
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(["source,question,answer,rating", good, bad]) + "\n")
    with pytest.raises(MazeDataError, match=r"bad.csv:3: question has 'X'"):
        read_maze_csv(path)
    path.write_text("a,b\n")
    with pytest.raises(MazeDataError, match="header"):
        read_maze_csv(path)
