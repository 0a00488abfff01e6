"""How ``rr report`` draws ARC examples: input and output grids in the ARC colours.

Each 30x30 canvas is cropped to the grid on it: the input to its non-padding
cells, an answer to the extent of the label (the output grid and its EOS border),
so every ACT step's answer is drawn over the same cells.
"""

from __future__ import annotations

import numpy as np

from rr_arc.grids import COLOUR_OFFSET, EOS_TOKEN, MAX_GRID_SIZE, NUM_COLOURS, PAD_TOKEN
from rrcore.api import Cell, DatasetMetadata, Panel

ARC_COLOURS = (
    "#000000",
    "#0074d9",
    "#ff4136",
    "#2ecc40",
    "#ffdc00",
    "#aaaaaa",
    "#f012be",
    "#ff851b",
    "#7fdbff",
    "#870c25",
)
"""The colours of ARC's own viewer for colours 0-9."""


def _cell(token: int, position: int | None) -> Cell:
    if COLOUR_OFFSET <= token < COLOUR_OFFSET + NUM_COLOURS:
        return Cell("", ARC_COLOURS[token - COLOUR_OFFSET], position)
    return Cell("·" if token == EOS_TOKEN else "", "#f4f4f4", position)


def _extent(mask: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns spanning the True cells of a (30, 30) mask (all of it when none)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return slice(0, MAX_GRID_SIZE), slice(0, MAX_GRID_SIZE)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _panel(title: str, tokens: np.ndarray, extent: tuple[slice, slice], answer: bool) -> Panel:
    canvas = np.asarray(tokens).reshape(MAX_GRID_SIZE, MAX_GRID_SIZE)
    rows = [
        [
            _cell(int(canvas[r, c]), r * MAX_GRID_SIZE + c if answer else None)
            for c in range(extent[1].start, extent[1].stop)
        ]
        for r in range(extent[0].start, extent[0].stop)
    ]
    return Panel.of(title, rows)


class ArcView:
    """:class:`rrcore.contracts.views.PuzzleView` for ARC canvases (:mod:`rr_arc.grids`)."""

    def __init__(self, metadata: DatasetMetadata) -> None:
        """Every ARC data set has the same 30x30 canvas: ``metadata`` changes nothing."""

    def draw_input(self, inputs: np.ndarray) -> list[Panel]:
        canvas = np.asarray(inputs).reshape(MAX_GRID_SIZE, MAX_GRID_SIZE)
        return [_panel("input grid", inputs, _extent(canvas != PAD_TOKEN), answer=False)]

    def draw_answer(self, answer: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> list[Panel]:
        canvas = np.asarray(labels).reshape(MAX_GRID_SIZE, MAX_GRID_SIZE)
        return [_panel("output grid", answer, _extent(canvas != PAD_TOKEN), answer=True)]
