"""Augmentations are exactly invertible and translation never cuts a grid."""

from __future__ import annotations

import numpy as np
import pytest
from arc_testdata import augmented_tokens
from rr_arc.evaluator import deaugment
from rr_arc.grids import (
    EOS_TOKEN,
    MAX_GRID_SIZE,
    crop,
    encode,
    inverse_permutation,
    random_colour_permutation,
    translate,
)

from rrcore.api import dihedral, inverse_dihedral


def test_the_eight_transforms_are_distinct_and_invertible():
    grid = np.arange(12, dtype=np.uint8).reshape(3, 4) % 10  # no symmetry: all 8 images differ
    images = {dihedral(grid, t).tobytes() + bytes(dihedral(grid, t).shape) for t in range(8)}
    assert len(images) == 8
    for t in range(8):
        np.testing.assert_array_equal(inverse_dihedral(dihedral(grid, t), t), grid)


def test_colour_permutations_keep_background_and_invert():
    rng = np.random.default_rng(0)
    for _ in range(50):
        perm = random_colour_permutation(rng)
        assert perm[0] == 0 and sorted(perm) == list(range(10))
        np.testing.assert_array_equal(inverse_permutation(perm)[perm], np.arange(10))


def test_encode_marks_the_extent_with_eos():
    grid = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8)
    canvas = encode(grid, (4, 7))
    np.testing.assert_array_equal(canvas[4:6, 7:10], grid + 2)
    assert (canvas[6, 7:10] == EOS_TOKEN).all() and (canvas[4:6, 10] == EOS_TOKEN).all()
    assert canvas[6, 10] == 0 and (canvas > 0).sum() == 6 + 3 + 2
    full = encode(np.zeros((30, 30), dtype=np.uint8))
    assert (full == 2).all()  # a full-canvas grid has no room for EOS


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (30, 30), (30, 1), (12, 29)])
def test_translation_never_crops_a_grid(shape):
    rng = np.random.default_rng(1)
    grid = rng.integers(0, 10, size=shape).astype(np.uint8)
    rows, cols = shape
    # Every corner of the allowed range and random places in between.
    offsets = [
        (0, 0),
        (MAX_GRID_SIZE - rows, 0),
        (0, MAX_GRID_SIZE - cols),
        (MAX_GRID_SIZE - rows, MAX_GRID_SIZE - cols),
    ]
    offsets += [
        (int(rng.integers(MAX_GRID_SIZE - rows + 1)), int(rng.integers(MAX_GRID_SIZE - cols + 1))) for _ in range(20)
    ]
    offsets = np.asarray(offsets)
    moved = translate(np.repeat(encode(grid)[None], len(offsets), axis=0), offsets)
    for canvas, (top, left) in zip(moved, offsets):
        np.testing.assert_array_equal(canvas, encode(grid, (top, left)))  # same as encoding in place
        assert ((canvas >= 2).sum()) == rows * cols
    back, heights, widths = crop(moved, offsets)
    assert (heights == rows).all() and (widths == cols).all()
    for canvas in back:
        np.testing.assert_array_equal(canvas[:rows, :cols] - 2, grid)


def test_every_augmentation_inverts_to_the_original():
    """All 8 transforms x random colour permutations x random translations, through the evaluator's path."""
    rng = np.random.default_rng(2)
    grids, preds, puzzles, offsets, transforms, perms = [], [], [], [], [], []
    for trial in range(160):
        rows, cols = int(rng.integers(1, 31)), int(rng.integers(1, 31))
        grid = rng.integers(0, 10, size=(rows, cols)).astype(np.uint8)
        transform = trial % 8
        perm = random_colour_permutation(rng)
        h, w = dihedral(grid, transform).shape
        offset = (int(rng.integers(MAX_GRID_SIZE - h + 1)), int(rng.integers(MAX_GRID_SIZE - w + 1)))
        grids.append(grid)
        preds.append(augmented_tokens(grid, transform, perm, offset))
        puzzles.append(trial + 1)
        offsets.append(offset)
        transforms.append(transform)
        perms.append(perm)
    table = {
        "example_puzzle": np.asarray(puzzles),
        "example_offset": np.asarray(offsets, dtype=np.uint8),
        "puzzle_transform": np.asarray([0] + transforms, dtype=np.uint8),
        "puzzle_colours": np.stack([np.arange(10, dtype=np.uint8)] + perms),
    }
    restored = deaugment(np.stack(preds), np.arange(len(grids)), table)
    for grid, back in zip(grids, restored):
        np.testing.assert_array_equal(back, grid)


def test_crop_finds_no_grid_when_the_offset_holds_no_colour():
    canvas = np.zeros((1, 30, 30), dtype=np.uint8)
    canvas[0, 5:8, 5:8] = 4
    _, heights, widths = crop(canvas, np.asarray([[0, 0]]))
    assert heights[0] == 0 and widths[0] == 0
    _, heights, widths = crop(canvas, np.asarray([[5, 5]]))
    assert (heights[0], widths[0]) == (3, 3)
