"""Maze grids: tokens, generation of hard mazes, breadth-first search and symmetries.

A maze is an (H, W) grid of tokens, the layout of the Maze-Hard data set as the
HRM/TRM builders encode it (each character of ``# SGo`` is its index + 1, 0 pads):

=====  ====  ==========================================
token  char  meaning
=====  ====  ==========================================
0            padding (never in a grid; ignored label)
1      ``#``   wall
2      (space) open cell
3      ``S``   start
4      ``G``   goal
5      ``o``   a cell on the path (labels only)
=====  ====  ==========================================

The input is the grid with walls, open cells, ``S`` and ``G``; the label is the
same grid with the cells of one shortest start-to-goal path (``S`` and ``G``
excluded) turned into ``o``. Moves go up, down, left or right; a path's *length*
is its number of moves.

Generation: a perfect maze (a random spanning tree by depth-first search, which
gives long winding corridors) on the lattice of cells at every other row and
column, then a fraction ``loop_fraction`` of the remaining walls between two
cells removed so that mazes have loops and often several shortest paths. The
start is a random open cell and the goal a random open cell more than
``hard_threshold`` moves away; mazes whose start has no such cell are redrawn.
The HRM paper builds Maze-Hard by keeping instances whose difficulty exceeds 110
(the data set's ``rating`` column); rr reads that as the shortest path length and
uses 110 as the default threshold.
"""

from __future__ import annotations

import attrs
import numpy as np

PAD, WALL, OPEN, START, GOAL, PATH = 0, 1, 2, 3, 4, 5
CHARSET = "# SGo"
"""Character of each token 1..5 in the hub data set's CSV files."""
VOCAB_SIZE = len(CHARSET) + 1
UNREACHED = -1


@attrs.define
class MazeSettings:
    """What :func:`generate_mazes` draws: grid size, hardness and loops."""

    width: int = 30
    height: int = 30
    hard_threshold: int = 110
    loop_fraction: float = 0.02


# -- breadth-first search --------------------------------------------------------------------


def bfs_distances(passable: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Moves from the source cells to every cell, for a batch of grids at once.

    ``passable`` (N, H, W) bool, ``sources`` (N, H, W) bool; returns (N, H, W) int32
    with :data:`UNREACHED` where no path leads. One iteration grows every grid's
    frontier by one step, so the loop runs as many times as the longest distance.
    """
    frontier = sources & passable
    remaining = passable & ~frontier  # passable cells not reached yet
    # A cell reached at step s is still in ``remaining`` at the start of steps 1..s, so
    # adding ``remaining`` every step counts its distance without indexed writes.
    distance = np.zeros(passable.shape, dtype=np.int32)
    while frontier.any():
        distance += remaining
        grown = frontier.copy()
        grown[:, 1:] |= frontier[:, :-1]
        grown[:, :-1] |= frontier[:, 1:]
        grown[:, :, 1:] |= frontier[:, :, :-1]
        grown[:, :, :-1] |= frontier[:, :, 1:]
        grown &= remaining
        remaining ^= grown
        frontier = grown
    distance[remaining | ~passable] = UNREACHED
    return distance


def shortest_path_lengths(grids: np.ndarray) -> np.ndarray:
    """Length of the shortest start-to-goal path of each maze (N,), -1 when there is none.

    Only walls block; the input's ``S`` and ``G`` tokens mark the ends (path tokens,
    if any, count as open).
    """
    grids = np.asarray(grids)
    distance = bfs_distances(grids != WALL, grids == START)
    at_goal = np.where(grids == GOAL, distance, UNREACHED).reshape(len(grids), -1).max(axis=1)
    return at_goal


_STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right: the label's tie-break order


def trace_paths(to_goal: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cells of one shortest path per maze, walking from each start down ``to_goal``.

    ``to_goal`` (N, H, W) distances to the goal, ``starts`` (N, 2) rows and columns;
    returns (N, H, W) bool marking the path's cells strictly between start and goal.
    At a fork the first step in up, down, left, right order is taken.
    """
    count, height, width = to_goal.shape
    padded = np.pad(to_goal, ((0, 0), (1, 1), (1, 1)), constant_values=UNREACHED)
    rows, cols = starts[:, 0] + 1, starts[:, 1] + 1
    batch = np.arange(count)
    on_path = np.zeros((count, height + 2, width + 2), dtype=bool)
    remaining = padded[batch, rows, cols]
    for _ in range(int(remaining.max(initial=0))):
        moving = remaining > 1  # the last step lands on the goal, which is not marked
        chosen = np.zeros(count, dtype=bool)
        next_rows, next_cols = rows.copy(), cols.copy()
        for d_row, d_col in _STEPS:
            fits = ~chosen & (padded[batch, rows + d_row, cols + d_col] == remaining - 1)
            next_rows = np.where(fits, rows + d_row, next_rows)
            next_cols = np.where(fits, cols + d_col, next_cols)
            chosen |= fits
        rows, cols = np.where(moving, next_rows, rows), np.where(moving, next_cols, cols)
        on_path[batch[moving], rows[moving], cols[moving]] = True
        remaining = np.where(moving, remaining - 1, remaining)
    return on_path[:, 1:-1, 1:-1]


def label_mazes(grids: np.ndarray) -> np.ndarray:
    """Labels of input grids: one shortest path marked with :data:`PATH` tokens."""
    grids = np.asarray(grids)
    to_goal = bfs_distances(grids != WALL, grids == GOAL)
    starts = np.argwhere(grids == START)  # one per grid, in grid order
    if len(starts) != len(grids):
        raise ValueError("every maze needs exactly one start")
    if np.any(to_goal[starts[:, 0], starts[:, 1], starts[:, 2]] == UNREACHED):
        raise ValueError("a maze has no path from start to goal")
    labels = grids.copy()
    labels[trace_paths(to_goal, starts[:, 1:])] = PATH
    return labels


# -- generation --------------------------------------------------------------------------------


def _spanning_tree_walls(cells_high: int, cells_wide: int, rng: np.random.Generator) -> np.ndarray:
    """Open-cell mask ((2*ch+1), (2*cw+1)) of a depth-first-search perfect maze."""
    grid = np.zeros((2 * cells_high + 1, 2 * cells_wide + 1), dtype=bool)
    count = cells_high * cells_wide
    visited = np.zeros(count, dtype=bool)
    choices = rng.random(2 * count)  # one draw per push and backtrack bound (cheaper than per-call RNG)
    start = int(rng.integers(count))
    stack = [start]
    visited[start] = True
    grid[2 * (start // cells_wide) + 1, 2 * (start % cells_wide) + 1] = True
    draw = 0
    while stack:
        cell = stack[-1]
        row, col = divmod(cell, cells_wide)
        options = []
        if row > 0 and not visited[cell - cells_wide]:
            options.append(cell - cells_wide)
        if row < cells_high - 1 and not visited[cell + cells_wide]:
            options.append(cell + cells_wide)
        if col > 0 and not visited[cell - 1]:
            options.append(cell - 1)
        if col < cells_wide - 1 and not visited[cell + 1]:
            options.append(cell + 1)
        if not options:
            stack.pop()
            continue
        nxt = options[int(choices[draw % len(choices)] * len(options))]
        draw += 1
        visited[nxt] = True
        n_row, n_col = divmod(nxt, cells_wide)
        grid[row + n_row + 1, col + n_col + 1] = True  # the wall between the two cells
        grid[2 * n_row + 1, 2 * n_col + 1] = True
        stack.append(nxt)
    return grid


def _open_loops(open_cells: np.ndarray, fraction: float, rng: np.random.Generator) -> None:
    """Remove ``fraction`` of the walls that separate two lattice cells (in place)."""
    if fraction <= 0:
        return
    between = np.zeros_like(open_cells)
    between[1:-1:2, 2:-1:2] = True  # between horizontal neighbours
    between[2:-1:2, 1:-1:2] = True  # between vertical neighbours
    candidates = np.argwhere(between & ~open_cells)
    chosen = candidates[rng.random(len(candidates)) < fraction]
    open_cells[chosen[:, 0], chosen[:, 1]] = True


def _draw_layouts(count: int, settings: MazeSettings, rng: np.random.Generator) -> np.ndarray:
    """``count`` open-cell masks (count, H, W) without start or goal."""
    height, width = settings.height, settings.width
    cells_high, cells_wide = (height - 1) // 2, (width - 1) // 2
    layouts = np.zeros((count, height, width), dtype=bool)
    for i in range(count):
        lattice = _spanning_tree_walls(cells_high, cells_wide, rng)
        _open_loops(lattice, settings.loop_fraction, rng)
        # An even side leaves one spare wall row/column: put it on a random side.
        top = int(rng.integers(height - lattice.shape[0] + 1))
        left = int(rng.integers(width - lattice.shape[1] + 1))
        layouts[i, top : top + lattice.shape[0], left : left + lattice.shape[1]] = lattice
    return layouts


def _pick(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random True cell of each (H, W) mask, as flat indices (masks must be non-empty)."""
    flat = masks.reshape(len(masks), -1)
    counts = flat.sum(axis=1)
    targets = np.floor(rng.random(len(masks)) * counts).astype(np.int64)
    return (np.cumsum(flat, axis=1) > targets[:, None]).argmax(axis=1)


def generate_mazes(
    count: int, settings: MazeSettings, rng: np.random.Generator, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, labels)``, each (count, H, W) uint8 tokens, of hard mazes.

    Deterministic for a given ``rng`` state. Raises ``ValueError`` when the grid is
    too small for the threshold (no maze found in many tries).
    """
    if settings.width < 3 or settings.height < 3:
        raise ValueError(f"mazes need at least 3x3 cells, got {settings.width}x{settings.height}")
    inputs, tries = [], 0
    found = 0
    while found < count:
        # Draw about twice what is missing: most layouts pass the threshold.
        layouts = _draw_layouts(min(batch_size, max(8, 2 * (count - found))), settings, rng)
        tries += len(layouts)
        shape = layouts.shape
        starts = _pick(layouts, rng)
        start_mask = np.zeros(shape[0] * shape[1] * shape[2], dtype=bool)
        start_mask[starts + np.arange(shape[0]) * shape[1] * shape[2]] = True
        start_mask = start_mask.reshape(shape)
        from_start = bfs_distances(layouts, start_mask)
        far = from_start > settings.hard_threshold
        hard = far.reshape(shape[0], -1).any(axis=1)
        if hard.any():
            goals = _pick(far[hard], rng)
            grids = np.where(layouts[hard], OPEN, WALL).astype(np.uint8)
            flat = grids.reshape(len(grids), -1)
            flat[np.arange(len(grids)), starts[hard]] = START
            flat[np.arange(len(grids)), goals] = GOAL
            inputs.append(grids)
            found += len(grids)
        if found == 0 and tries >= 5000:
            raise ValueError(
                f"no {settings.width}x{settings.height} maze with a path longer than "
                f"{settings.hard_threshold} moves in {tries} tries; lower hard_threshold"
            )
    grids = np.concatenate(inputs)[:count]
    return grids, label_mazes(grids).astype(np.uint8)


# -- symmetries and text -----------------------------------------------------------------------


def to_text(grid: np.ndarray) -> str:
    """A grid as the CSV data set writes it: one string, rows concatenated."""
    lookup = np.array(list("?" + CHARSET))
    return "".join(lookup[np.asarray(grid).reshape(-1)])


def render(grid: np.ndarray) -> str:
    """A grid as lines of text, for people."""
    width = np.asarray(grid).shape[-1]
    text = to_text(grid)
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))
