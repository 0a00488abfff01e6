"""Sudoku for rr: readers, an exact solver and generator, augmented data sets and the
``sudoku`` evaluator. Registered through :mod:`rr_sudoku.plugin`."""

from __future__ import annotations

__version__ = "0.1.0"
