"""ARC grids as tokens, and the augmentations applied to them.

A grid (at most 30x30 cells of colours 0-9) becomes 900 tokens on a 30x30 canvas,
as the HRM/TRM builders encode it: 0 is padding, 1 (EOS) marks the grid's extent
(the row just below it and the column just right of it), colours are 2..11. A grid
may sit anywhere on the canvas (translation); its top-left corner is its *offset*.

Augmentations are one of 8 dihedral transforms (``rrcore.api.dihedral``: 0 identity, 1-3
rotations by 90/180/270 degrees anticlockwise, 4 left-right flip, 5 up-down flip, 6
transpose, 7 anti-transpose), then a colour
permutation that keeps 0 (the background) fixed. Both are exactly invertible; the evaluator
uses ``inverse_dihedral`` and the inverse permutation to map predictions back.
"""

from __future__ import annotations

import numpy as np

MAX_GRID_SIZE = 30
SEQ_LEN = MAX_GRID_SIZE * MAX_GRID_SIZE
PAD_TOKEN = 0
EOS_TOKEN = 1
COLOUR_OFFSET = 2  # colour c is token c + 2
VOCAB_SIZE = 12
NUM_COLOURS = 10


def random_colour_permutation(rng: np.random.Generator) -> np.ndarray:
    """A permutation of colours 0-9 (uint8, ``perm[original] = new``) that keeps 0 fixed."""
    return np.concatenate([[0], rng.permutation(np.arange(1, NUM_COLOURS))]).astype(np.uint8)


def inverse_permutation(perm: np.ndarray) -> np.ndarray:
    """``inverse[new] = original`` for a permutation ``perm[original] = new``."""
    return np.argsort(perm).astype(np.uint8)


def token_lut(perm: np.ndarray) -> np.ndarray:
    """Token-to-token map (12,) applying colour permutation ``perm`` (pad and EOS kept)."""
    return np.concatenate([[PAD_TOKEN, EOS_TOKEN], np.asarray(perm, dtype=np.uint8) + COLOUR_OFFSET]).astype(np.uint8)


def encode(grid: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The (30, 30) uint8 token canvas of ``grid`` with its top-left corner at ``offset``."""
    rows, cols = grid.shape
    top, left = offset
    if top < 0 or left < 0 or top + rows > MAX_GRID_SIZE or left + cols > MAX_GRID_SIZE:
        raise ValueError(f"a {rows}x{cols} grid at offset {offset} does not fit the 30x30 canvas")
    canvas = np.zeros((MAX_GRID_SIZE, MAX_GRID_SIZE), dtype=np.uint8)
    canvas[top : top + rows, left : left + cols] = grid + COLOUR_OFFSET
    if top + rows < MAX_GRID_SIZE:
        canvas[top + rows, left : left + cols] = EOS_TOKEN
    if left + cols < MAX_GRID_SIZE:
        canvas[top : top + rows, left + cols] = EOS_TOKEN
    return canvas


def translate(canvases: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move canvases (n, 30, 30) encoded at offset (0, 0) to ``offsets`` (n, 2).

    Cells shifted past the canvas edge are dropped: for a grid that fits at its
    offset these are only padding or the EOS row/column that the edge replaces.
    """
    n = canvases.shape[0]
    axis = np.arange(MAX_GRID_SIZE)
    source_rows = axis[None, :] - offsets[:, 0:1]  # (n, 30)
    source_cols = axis[None, :] - offsets[:, 1:2]
    inside = (source_rows >= 0)[:, :, None] & (source_cols >= 0)[:, None, :]
    gathered = canvases[
        np.arange(n)[:, None, None], np.maximum(source_rows, 0)[:, :, None], np.maximum(source_cols, 0)[:, None, :]
    ]
    return np.where(inside, gathered, PAD_TOKEN).astype(np.uint8)


def crop(canvases: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find each predicted grid on its canvas, starting from its known offset.

    ``canvases`` (n, 30, 30) tokens, ``offsets`` (n, 2). Returns the canvases moved
    so that every grid starts at (0, 0), and the grids' heights and widths (n,).
    The extent is the largest-area rectangle of colour tokens anchored at the
    offset whose every row is a run of colours (the references' crop): rows count
    down until one starts with a non-colour, the width is the shortest colour run
    seen so far. A correct prediction crops exactly to the label's grid; a grid of
    0x0 means the model predicted no grid at all.
    """
    n = canvases.shape[0]
    axis = np.arange(MAX_GRID_SIZE)
    source_rows = axis[None, :] + offsets[:, 0:1]
    source_cols = axis[None, :] + offsets[:, 1:2]
    inside = (source_rows < MAX_GRID_SIZE)[:, :, None] & (source_cols < MAX_GRID_SIZE)[:, None, :]
    moved = canvases[
        np.arange(n)[:, None, None],
        np.minimum(source_rows, MAX_GRID_SIZE - 1)[:, :, None],
        np.minimum(source_cols, MAX_GRID_SIZE - 1)[:, None, :],
    ]
    moved = np.where(inside, moved, PAD_TOKEN).astype(np.uint8)
    is_colour = (moved >= COLOUR_OFFSET) & (moved < COLOUR_OFFSET + NUM_COLOURS)
    # Length of the run of colours from column 0 in every row: index of the first non-colour.
    run = np.where(is_colour.all(axis=2), MAX_GRID_SIZE, np.argmin(is_colour, axis=2))  # (n, 30)
    width_so_far = np.minimum.accumulate(run, axis=1)
    area = width_so_far * (axis + 1)[None, :]
    best = np.argmax(area, axis=1)  # first maximum: the smallest rectangle of that area
    best_area = area[np.arange(n), best]
    heights = np.where(best_area > 0, best + 1, 0)
    widths = np.where(best_area > 0, width_so_far[np.arange(n), best], 0)
    return moved, heights, widths
