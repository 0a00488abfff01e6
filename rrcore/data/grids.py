"""The 8 symmetries of the square, for task plugins whose examples are grids.

Transform ids: 0 identity, 1-3 rotations by 90/180/270 degrees (``np.rot90``),
4 left-right flip, 5 up-down flip, 6 transpose, 7 anti-transpose. Every function
acts on the last two axes, so a stack of grids transforms at once.
"""

from __future__ import annotations

import numpy as np

NUM_DIHEDRAL = 8
DIHEDRAL_NAMES = ("identity", "rot90", "rot180", "rot270", "flip_lr", "flip_ud", "transpose", "anti_transpose")
# Rotations by 90 and 270 undo each other; every other transform is its own inverse.
DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def dihedral(grids: np.ndarray, transform: int) -> np.ndarray:
    """``grids`` (..., H, W) under dihedral transform ``transform`` (0-7), as a new contiguous array."""
    if not 0 <= transform < NUM_DIHEDRAL:
        raise ValueError(f"dihedral transform id must be 0-7, got {transform}")
    if transform < 4:
        out = np.rot90(grids, k=transform, axes=(-2, -1))
    elif transform == 4:
        out = grids[..., :, ::-1]
    elif transform == 5:
        out = grids[..., ::-1, :]
    elif transform == 6:
        out = np.swapaxes(grids, -1, -2)
    else:
        out = np.swapaxes(grids[..., ::-1, ::-1], -1, -2)
    return np.ascontiguousarray(out)


def inverse_dihedral(grids: np.ndarray, transform: int) -> np.ndarray:
    """Undo :func:`dihedral` with the same ``transform``."""
    return dihedral(grids, DIHEDRAL_INVERSE[transform])


def shape_preserving_transforms(height: int, width: int) -> list[int]:
    """The transforms that map an (H, W) grid to an (H, W) grid (all 8 when square)."""
    return list(range(NUM_DIHEDRAL)) if height == width else [0, 2, 4, 5]
