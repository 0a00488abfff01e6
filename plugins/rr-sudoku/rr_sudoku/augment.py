"""Validity-preserving Sudoku augmentations, vectorised over many draws.

Each draw combines the symmetries of the Sudoku constraints: a relabelling of the
digits (blank stays blank), a permutation of the bands (groups of ``b`` rows) and
of the rows within each band, the same for stacks and columns, and a transpose
with probability 1/2. Applying one draw to a puzzle and its solution gives
another puzzle/solution pair.

The builder draws them with numpy (``num_aug`` copies written to disk); with
``[data] online_augment`` the trainer draws the same symmetries afresh for every
training batch on the device (:class:`SudokuBatchAugmenter`), in the same ``(sources,
digit_maps)`` form.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from rr_sudoku.grid import BLANK_TOKEN, DIGIT_OFFSET, geometry
from rrcore.api import Batch


def _line_permutations(count: int, box: int, rng: np.random.Generator) -> np.ndarray:
    """(count, box*box) row (or column) orders: permuted bands of permuted rows."""
    bands = np.argsort(rng.random((count, box)), axis=1)  # (count, box)
    within = np.argsort(rng.random((count, box, box)), axis=2)  # (count, box, box)
    return (bands[:, :, None] * box + within).reshape(count, box * box)


def random_transforms(count: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random symmetries as ``(sources, digit_maps)``.

    ``sources`` (count, cells): cell ``i`` of a transformed grid is cell
    ``sources[k, i]`` of the original; ``digit_maps`` (count, size + 1): digit ``d``
    becomes ``digit_maps[k, d]`` (``digit_maps[:, 0] == 0`` keeps blanks blank).
    """
    geo = geometry(size)
    rows = _line_permutations(count, geo.box, rng)
    cols = _line_permutations(count, geo.box, rng)
    sources = rows[:, :, None] * size + cols[:, None, :]  # (count, size, size)
    transpose = rng.random(count) < 0.5
    sources = np.where(transpose[:, None, None], sources.transpose(0, 2, 1), sources)
    digits = 1 + np.argsort(rng.random((count, size)), axis=1)
    digit_maps = np.concatenate([np.zeros((count, 1), dtype=digits.dtype), digits], axis=1)
    return sources.reshape(count, geo.cells), digit_maps


def apply_transforms(grids: np.ndarray, sources: np.ndarray, digit_maps: np.ndarray) -> np.ndarray:
    """Apply every transform to one digit grid (cells,): returns (count, cells) uint8."""
    moved = np.asarray(grids)[sources]  # (count, cells)
    return np.take_along_axis(digit_maps, moved.astype(np.int64), axis=1).astype(np.uint8)


def augment(
    puzzle: np.ndarray, solution: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` augmented copies of a puzzle and its solution, transformed alike."""
    puzzle = np.asarray(puzzle).reshape(-1)
    size = int(round(puzzle.size**0.5))
    sources, digit_maps = random_transforms(count, size, rng)
    return apply_transforms(puzzle, sources, digit_maps), apply_transforms(solution, sources, digit_maps)


# -- drawn per batch on the device ---------------------------------------------------------


def _device_line_permutations(rows: int, box: int, draw: torch.Tensor) -> torch.Tensor:
    """(rows, box*box) row (or column) orders from ``draw`` (rows, box + box*box) uniforms."""
    bands = torch.argsort(draw[:, :box], dim=1)  # (rows, box)
    within = torch.argsort(draw[:, box:].reshape(rows, box, box), dim=2)  # (rows, box, box)
    return (bands[:, :, None] * box + within).reshape(rows, box * box)


def device_transforms(
    rows: int, size: int, generator: torch.Generator, row_offset: int = 0, total_rows: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`random_transforms` on the generator's device: ``(sources, digit_maps)`` for
    ``rows`` rows, (rows, cells) and (rows, size + 1) int64.

    Drawn for ``total_rows`` rows (default ``rows``) and sliced from ``row_offset``, so a
    row's transform does not depend on which rank takes it.
    """
    geo = geometry(size)
    box, total = geo.box, total_rows or rows
    line = box + box * box
    # One draw per row: rows, columns, transpose, digits.
    draw = torch.rand(total, 2 * line + 1 + size, generator=generator, device=generator.device)
    draw = draw[row_offset : row_offset + rows]
    row_order = _device_line_permutations(rows, box, draw[:, :line])
    col_order = _device_line_permutations(rows, box, draw[:, line : 2 * line])
    sources = row_order[:, :, None] * size + col_order[:, None, :]  # (rows, size, size)
    transpose = draw[:, 2 * line] < 0.5
    sources = torch.where(transpose[:, None, None], sources.transpose(1, 2), sources)
    digits = 1 + torch.argsort(draw[:, 2 * line + 1 :], dim=1)  # (rows, size)
    digit_maps = torch.cat([torch.zeros_like(digits[:, :1]), digits], dim=1)
    return sources.reshape(rows, geo.cells), digit_maps


def _map_digit_tokens(tokens: torch.Tensor, digit_maps: torch.Tensor) -> torch.Tensor:
    """Digit tokens through ``digit_maps`` (rows, size + 1); pad, blank and -100 unchanged."""
    size = digit_maps.shape[1] - 1
    is_digit = (tokens > BLANK_TOKEN) & (tokens <= size + DIGIT_OFFSET)
    digits = torch.where(is_digit, tokens.long() - DIGIT_OFFSET, 0)
    mapped = torch.gather(digit_maps, 1, digits) + DIGIT_OFFSET
    return torch.where(is_digit, mapped.to(tokens.dtype), tokens)


def transform_tokens(tokens: torch.Tensor, sources: torch.Tensor, digit_maps: torch.Tensor) -> torch.Tensor:
    """Token rows (rows, cells) moved by ``sources`` and relabelled by ``digit_maps``: the
    form :func:`device_transforms` draws (pad, blank and ignored labels keep their value)."""
    return _map_digit_tokens(torch.gather(tokens, 1, sources), digit_maps)


def invert_tokens(tokens: torch.Tensor, sources: torch.Tensor, digit_maps: torch.Tensor) -> torch.Tensor:
    """The rows :func:`transform_tokens` made from ``tokens``, given back: every transform is
    a bijection of cells and of digits."""
    values = torch.arange(digit_maps.shape[1], device=digit_maps.device).expand_as(digit_maps)
    inverse_maps = torch.empty_like(digit_maps).scatter_(1, digit_maps, values)
    return torch.empty_like(tokens).scatter_(1, sources, _map_digit_tokens(tokens, inverse_maps))


@attrs.frozen
class SudokuBatchAugmenter:
    """``[data] online_augment``: a fresh symmetry for every row of every training batch,
    the same one on its ``inputs`` and ``labels`` (a :class:`rrcore.api.BatchAugmenter`)."""

    size: int

    def __call__(self, batch: Batch, generator: torch.Generator, row_offset: int, global_batch_size: int) -> Batch:
        rows = batch["inputs"].shape[0]
        sources, digit_maps = device_transforms(rows, self.size, generator, row_offset, global_batch_size)
        return {
            **batch,
            "inputs": transform_tokens(batch["inputs"], sources, digit_maps),
            "labels": transform_tokens(batch["labels"], sources, digit_maps),
        }
