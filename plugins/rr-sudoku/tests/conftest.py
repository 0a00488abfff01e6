"""Shared fixtures of the rr-sudoku tests."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_SUDOKU = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "sudoku"


@pytest.fixture
def shared_sudoku() -> Path:
    """The shared puzzle collections (skip when this checkout has none beside it)."""
    if not SHARED_SUDOKU.is_dir():
        pytest.skip("../shared/data/sudoku not present")
    return SHARED_SUDOKU
