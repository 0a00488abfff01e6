"""A generator of Sudoku puzzles with unique solutions, deterministic per seed.

A puzzle starts from a random full grid (the solver run on an empty grid with a
seeded digit order); givens are then removed in a seeded random order, each
removal kept only when the solution stays unique, until ``givens`` remain (0:
until no given can be removed, i.e. a minimal puzzle). A puzzle whose guess count
(the solver's difficulty, see :mod:`rr_sudoku.solver`) falls outside
``[min_guesses, max_guesses]`` is discarded and a new one is drawn.

Every puzzle has its own random stream keyed by ``(seed, stream, index)``, so the
result does not depend on the number of worker processes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
import numpy as np

from rr_sudoku.grid import geometry
from rr_sudoku.solver import default_jobs, parallel_map, solve


@attrs.frozen
class DifficultyTarget:
    """What a generated puzzle must satisfy.

    ``givens``: number of givens to stop at (0 = remove while the solution stays
    unique). ``min_guesses``/``max_guesses``: bounds on the solver's guess count
    (``max_guesses`` None = no bound). ``max_attempts``: puzzles drawn before giving up.
    """

    givens: int = 0
    min_guesses: int = 0
    max_guesses: int | None = None
    max_attempts: int = 200


class GenerationError(RuntimeError):
    """No puzzle met the target within ``max_attempts`` draws."""


def random_grid(size: int, rng: random.Random) -> np.ndarray:
    """A uniformly shuffled search's first full grid of ``size x size``."""

    def shuffled(bits: list[int]) -> list[int]:
        rng.shuffle(bits)
        return bits

    solutions, _ = solve(np.zeros(size * size, dtype=np.uint8), limit=1, order=shuffled)
    return solutions[0]


def _dig(solution: np.ndarray, givens: int, rng: random.Random) -> np.ndarray:
    puzzle = solution.copy()
    cells = list(range(len(puzzle)))
    rng.shuffle(cells)
    remaining = len(puzzle)
    for cell in cells:
        if givens and remaining <= givens:
            break
        digit = puzzle[cell]
        puzzle[cell] = 0
        if len(solve(puzzle, limit=2)[0]) == 1:
            remaining -= 1
        else:
            puzzle[cell] = digit
    return puzzle


def generate_puzzle(
    size: int, seed: int, index: int = 0, target: DifficultyTarget = DifficultyTarget(), stream: str = ""
) -> tuple[np.ndarray, np.ndarray, int]:
    """One puzzle ``(puzzle, solution, guesses)`` of ``size x size`` meeting ``target``.

    The same ``(seed, stream, index)`` always gives the same puzzle.
    """
    geo = geometry(size)
    if target.givens and not 0 < target.givens <= geo.cells:
        raise ValueError(f"givens must lie in [1, {geo.cells}] for {size}x{size}, got {target.givens}")
    rng = random.Random(f"rr-sudoku:{size}:{seed}:{stream}:{index}")
    for _ in range(target.max_attempts):
        solution = random_grid(size, rng)
        puzzle = _dig(solution, target.givens, rng)
        if target.givens and np.count_nonzero(puzzle) > target.givens:
            continue  # this grid cannot go that low; draw another
        _, guesses = solve(puzzle, limit=2)
        if guesses >= target.min_guesses and (target.max_guesses is None or guesses <= target.max_guesses):
            return puzzle, solution, guesses
    raise GenerationError(
        f"no {size}x{size} puzzle with {target} in {target.max_attempts} attempts; loosen the givens or guess bounds"
    )


def _generate_chunk(
    args: tuple[int, int, str, DifficultyTarget, list[int]],
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    size, seed, stream, target, indices = args
    return [generate_puzzle(size, seed, index, target, stream) for index in indices]


def generate_many(
    size: int,
    count: int,
    seed: int,
    target: DifficultyTarget = DifficultyTarget(),
    stream: str = "",
    jobs: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` puzzles as arrays ``(puzzles, solutions, guesses)``, over ``jobs`` processes."""
    chunk = 16 if size == 9 else 256
    tasks = [
        (size, seed, stream, target, list(range(start, min(start + chunk, count)))) for start in range(0, count, chunk)
    ]
    jobs = jobs or default_jobs()
    results: list[tuple[np.ndarray, np.ndarray, int]] = []
    with parallel_map(_generate_chunk, tasks, jobs) as parts:
        for part in parts:
            results.extend(part)
            if progress:
                progress(len(part))
    cells = size * size
    if not results:
        empty = np.zeros((0, cells), dtype=np.uint8)
        return empty, empty.copy(), np.zeros(0, dtype=np.int64)
    puzzles, solutions, guesses = zip(*results, strict=True)
    return np.stack(puzzles), np.stack(solutions), np.asarray(guesses, dtype=np.int64)
