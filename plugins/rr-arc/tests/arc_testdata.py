"""Helpers for rr-arc's tests (a unique module name: all plugin tests share one session)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rr_arc.grids import encode, token_lut, translate

from rrcore.api import dihedral

SHARED_ARC = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "arc"
# Three plain tasks per subset, plus an evaluation task with two test inputs (partial credit).
TASKS = {
    "training": ["007bbfb7", "00d62c1b", "017c7c7b"],
    "evaluation": ["00576224", "009d5c81", "00dbd492", "12997ef3"],
}


def write_combined(folder: Path, subset: str, tasks: dict, solutions: dict | None, prefix: str = "arc-agi") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}_{subset}_challenges.json").write_text(json.dumps(tasks))
    if solutions is not None:
        (folder / f"{prefix}_{subset}_solutions.json").write_text(json.dumps(solutions))


def augmented_tokens(grid: np.ndarray, transform: int, perm: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """(900,) tokens of ``grid`` augmented the way the builder does it (for hand-made predictions)."""
    canvas = token_lut(perm)[encode(dihedral(np.asarray(grid, dtype=np.uint8), transform))]
    return translate(canvas[None], np.asarray([offset]))[0].reshape(-1)
