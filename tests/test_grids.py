"""The shared dihedral transforms."""

from __future__ import annotations

import numpy as np

from rrcore.data.grids import DIHEDRAL_INVERSE, dihedral, inverse_dihedral, shape_preserving_transforms


def test_eight_distinct_transforms_each_undone_by_its_inverse():
    grid = np.arange(12).reshape(3, 4)
    images = {dihedral(grid, t).tobytes() + bytes(dihedral(grid, t).shape) for t in range(8)}
    assert len(images) == 8
    for t in range(8):
        assert np.array_equal(inverse_dihedral(dihedral(grid, t), t), grid)
        assert DIHEDRAL_INVERSE[DIHEDRAL_INVERSE[t]] == t


def test_stacks_transform_like_single_grids_and_shapes_are_kept_where_promised():
    stack = np.random.default_rng(0).integers(0, 9, size=(5, 3, 4))
    for t in range(8):
        assert np.array_equal(dihedral(stack, t)[2], dihedral(stack[2], t))
    for t in shape_preserving_transforms(3, 4):
        assert dihedral(stack, t).shape == stack.shape
    assert np.array_equal(dihedral(np.array([[1, 2], [3, 4]]), 6), [[1, 3], [2, 4]])
