"""How a task's examples are drawn in ``rr report``: cells, panels and the puzzle-view contract.

A task plugin draws its puzzles through the ``view`` of its
:class:`~rrcore.contracts.specs.TaskSpec`, a :class:`PuzzleView`. The view turns token
sequences into :class:`Panel` s: rectangles of :class:`Cell` s with a text and a
colour. A cell that shows one position of the answer names that ``position``; the
report then marks it *wrong* (the label there differs) and *changed* (it differs
from the previous ACT step) itself, so every task gets the same marks. A task
without a view gets :class:`TokenView`: the raw token ids in a square (or wrapped)
grid.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import attrs
import numpy as np


@attrs.frozen
class Cell:
    """One drawn cell: ``text`` (may be empty), a CSS background ``colour`` (None: the
    page's), the answer ``position`` it shows (None for cells that show no single
    position, e.g. a cube sticker computed from the whole state) and ``given``
    (part of the puzzle, drawn bold)."""

    text: str = ""
    colour: str | None = None
    position: int | None = None
    given: bool = False


@attrs.frozen
class Panel:
    """A titled rectangle of cells; ``None`` leaves a gap. ``block`` > 0 draws a heavier
    line every ``block`` rows and columns (Sudoku boxes)."""

    title: str
    rows: tuple[tuple[Cell | None, ...], ...]
    block: int = 0

    @classmethod
    def of(cls, title: str, rows: list[list[Cell | None]], block: int = 0) -> Panel:
        return cls(title, tuple(tuple(row) for row in rows), block)

    def cells(self) -> list[Cell]:
        return [cell for row in self.rows for cell in row if cell is not None]


@runtime_checkable
class PuzzleView(Protocol):
    """Draws one task's examples (made by its ``TaskSpec.view``).

    Token arrays are 1-D numpy int arrays of the data set's ``seq_len``. ``labels``
    has the data set's pad id where nothing is scored.

    * ``draw_input(inputs)``: the puzzle as posed (drawn once per example).
    * ``draw_answer(answer, inputs, labels)``: an answer — the decoded prediction
      after one ACT step, or the label itself — with each cell that shows one
      answer position naming it in ``Cell.position``. ``inputs`` and ``labels``
      help lay it out (walls of a maze, the extent of an ARC output grid).
    """

    def draw_input(self, inputs: np.ndarray) -> list[Panel]: ...

    def draw_answer(self, answer: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> list[Panel]: ...


def grid_shape(length: int, max_width: int = 32) -> tuple[int, int]:
    """(rows, columns) for ``length`` tokens: a square when ``length`` is one, else rows of
    ``max_width``."""
    side = math.isqrt(length)
    if side * side == length:
        return side, side
    width = min(length, max_width)
    return -(-length // width), width


def token_panel(
    title: str,
    tokens: np.ndarray,
    *,
    answer: bool,
    text: list[str] | None = None,
    colours: list[str | None] | None = None,
    shape: tuple[int, int] | None = None,
    block: int = 0,
    given: np.ndarray | None = None,
) -> Panel:
    """A panel with one cell per token, row-major in ``shape`` (default :func:`grid_shape`).

    ``text[token]`` / ``colours[token]`` style each token (default: its id, no colour);
    ``answer`` makes each cell name its position, so the report can mark it.
    """
    tokens = np.asarray(tokens).reshape(-1)
    height, width = shape or grid_shape(len(tokens))
    rows: list[list[Cell | None]] = []
    for r in range(height):
        row: list[Cell | None] = []
        for c in range(width):
            position = r * width + c
            if position >= len(tokens):
                row.append(None)
                continue
            token = int(tokens[position])
            label = text[token] if text is not None and 0 <= token < len(text) else str(token)
            colour = colours[token] if colours is not None and 0 <= token < len(colours) else None
            row.append(
                Cell(label, colour, position if answer else None, bool(given[position]) if given is not None else False)
            )
        rows.append(row)
    return Panel.of(title, rows, block)


class TokenView:
    """The view of a task that has none: token ids laid out as :func:`grid_shape`."""

    def draw_input(self, inputs: np.ndarray) -> list[Panel]:
        return [token_panel("input", inputs, answer=False)]

    def draw_answer(self, answer: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> list[Panel]:
        return [token_panel("answer", answer, answer=True)]


def puzzle_view(registry, dataset: str, metadata) -> PuzzleView:
    """The view of the task registered for ``dataset``, else :class:`TokenView`."""
    task = registry.find("task", dataset)
    return task.view(metadata) if task is not None and task.view is not None else TokenView()
