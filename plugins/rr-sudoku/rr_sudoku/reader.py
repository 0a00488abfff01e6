"""Readers for Sudoku puzzle files.

Two layouts:

* **lines**: one puzzle per line, row-major, ``.`` or ``0`` for a blank and ``1``..``n``
  for givens (81 characters for 9x9, 16 for 4x4); blank lines and lines starting
  with ``#`` are ignored (the collections under ``../shared/data/sudoku/``), and so
  is a trailing ``# comment`` (``rr sudoku generate`` writes ``  # guesses N``).
* **csv**: a header ``source,question,answer,rating`` then one puzzle a row, as in
  the Sudoku-Extreme data set (``answer`` the solution, ``rating`` its difficulty);
  ``rr sudoku label --output`` writes this layout. The reader checks that each answer
  solves its question; the builder then proves it the only solution, as it labels the
  puzzles of a line file.

Both accept a UTF-8 byte order mark and Windows (CRLF) line ends.

A malformed line becomes a :class:`PuzzleProblem` naming file and line; with
``on_error="reject"`` the first one raises :class:`SudokuDataError`, with ``"skip"``
it is dropped and counted.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import attrs
import numpy as np

from rr_sudoku.grid import BOX_OF_SIZE, geometry, givens_conflict, size_of_length, valid_solutions
from rrcore.api import DataSourceError

OnError = Literal["skip", "reject"]


class SudokuDataError(DataSourceError):
    """Puzzle input rejected; the message names the file and line."""


MALFORMED = "malformed"
CONTRADICTORY = "contradictory givens"
WRONG_ANSWER = "wrong answer"
NO_SOLUTION = "no solution"
SEVERAL_SOLUTIONS = "several solutions"


@attrs.frozen
class PuzzleProblem:
    """One unusable puzzle: where it is, what is wrong with it and the ``reason``
    it is counted under (``MALFORMED``, ``NO_SOLUTION``, ...) in summaries."""

    path: str
    line: int
    message: str
    reason: str = MALFORMED

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@attrs.define
class PuzzleFile:
    """Puzzles read from one file.

    ``puzzles`` (N, cells) uint8 digits with 0 for blanks; ``lines`` (N,) the line
    number of each; ``solutions`` and ``ratings`` only when the file carries them
    (CSV); ``problems`` the malformed lines that were skipped.
    """

    path: str
    size: int
    puzzles: np.ndarray
    lines: np.ndarray
    solutions: np.ndarray | None = None
    ratings: np.ndarray | None = None
    problems: list[PuzzleProblem] = attrs.field(factory=list)

    def __len__(self) -> int:
        return len(self.puzzles)

    def select(self, rows: np.ndarray) -> PuzzleFile:
        """The puzzles at ``rows`` (problems are kept: they describe the whole file)."""
        pick = lambda array: None if array is None else array[rows]  # noqa: E731
        return PuzzleFile(
            self.path,
            self.size,
            self.puzzles[rows],
            self.lines[rows],
            pick(self.solutions),
            pick(self.ratings),
            list(self.problems),
        )


class ProblemLog:
    """Collects the problems of one reading (or labelling) pass.

    ``finish()`` raises :class:`SudokuDataError` naming the first problem (by line)
    when rejecting; when skipping, ``sorted()`` lists them for the summary.
    """

    def __init__(self, on_error: OnError) -> None:
        if on_error not in ("skip", "reject"):
            raise ValueError(f"on_error must be 'skip' or 'reject', got {on_error!r}")
        self.on_error = on_error
        self.problems: list[PuzzleProblem] = []

    def report(self, path: str | Path, line: int, message: str, reason: str = MALFORMED) -> None:
        self.problems.append(PuzzleProblem(str(path), line, message, reason))

    def counts(self, path: str | None = None) -> dict[str, int]:
        """Problems per reason (of ``path`` only when given), most frequent first."""
        counted: dict[str, int] = {}
        for problem in self.problems:
            if path is None or problem.path == path:
                counted[problem.reason] = counted.get(problem.reason, 0) + 1
        return dict(sorted(counted.items(), key=lambda item: -item[1]))

    def sorted(self) -> list[PuzzleProblem]:
        return sorted(self.problems, key=lambda problem: (problem.path, problem.line))

    def finish(self) -> None:
        if self.on_error == "reject" and self.problems:
            problems = self.sorted()
            more = f" and {len(problems) - 1} more unusable puzzles" if len(problems) > 1 else ""
            raise SudokuDataError(f'{problems[0]}{more} (set on_error = "skip" to drop them)')


def parse_grid(text: str, size: int | None = None) -> np.ndarray:
    """Digits of one puzzle string (``.``/``0`` blank); ValueError says what is wrong."""
    if size is None:
        try:
            size = size_of_length(len(text))
        except ValueError:
            raise ValueError(f"{len(text)} characters; a puzzle has 81 (9x9) or 16 (4x4)") from None
    elif len(text) != size * size:
        raise ValueError(f"{len(text)} characters; a {size}x{size} puzzle has {size * size}")
    digits = np.frombuffer(text.translate(_BLANK_TO_ZERO).encode("utf-8", "replace"), dtype=np.uint8) - ord("0")
    bad = np.flatnonzero(digits > size) if digits.size == len(text) else np.arange(len(text))
    if bad.size:
        raise ValueError(f"bad character {text[bad[0]]!r} at column {bad[0] + 1} (expected '.', '0' or 1-{size})")
    return digits


_BLANK_TO_ZERO = str.maketrans(".", "0")


def conflicting_givens(puzzles: np.ndarray, size: int) -> np.ndarray:
    """Rows of ``puzzles`` (N, cells) where a digit repeats in a unit (vectorised)."""
    units = np.asarray(geometry(size).units)
    values = np.sort(puzzles[:, units], axis=-1)  # (N, units, size)
    repeats = (values[..., 1:] == values[..., :-1]) & (values[..., 1:] != 0)
    return repeats.any(axis=(1, 2))


def _check_size(size: int | None) -> None:
    if size is not None and size not in BOX_OF_SIZE:
        raise ValueError(f"unsupported Sudoku size {size}; supported: {sorted(BOX_OF_SIZE)}")


def read_lines(path: str | Path, size: int | None = None, on_error: OnError = "skip") -> PuzzleFile:
    """Read a one-puzzle-per-line file (see module doc). ``size`` None: from the first puzzle."""
    _check_size(size)
    log = ProblemLog(on_error)
    puzzles, lines = [], []
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                digits = parse_grid(text, size)
            except ValueError as error:
                log.report(path, number, str(error))
                continue
            size = size or size_of_length(len(digits))
            puzzles.append(digits)
            lines.append(number)
    size = size or 9
    result = PuzzleFile(str(path), size, _stack(puzzles, size), np.asarray(lines, dtype=np.int64))
    result = _drop_conflicts(result, log)
    log.finish()
    result.problems = log.sorted()
    return result


def _drop_conflicts(puzzles: PuzzleFile, log: ProblemLog) -> PuzzleFile:
    bad = conflicting_givens(puzzles.puzzles, puzzles.size)
    for row in np.flatnonzero(bad):
        log.report(
            puzzles.path,
            int(puzzles.lines[row]),
            f"contradictory givens: {givens_conflict(puzzles.puzzles[row], puzzles.size)}",
            CONTRADICTORY,
        )
    return puzzles.select(np.flatnonzero(~bad)) if bad.any() else puzzles


def read_csv(path: str | Path, size: int | None = None, on_error: OnError = "skip") -> PuzzleFile:
    """Read a ``source,question,answer,rating`` CSV file (Sudoku-Extreme layout).

    Answers are checked to solve their question; ratings must be integers.
    """
    _check_size(size)
    log = ProblemLog(on_error)
    puzzles, solutions, ratings, lines = [], [], [], []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        expected = ["source", "question", "answer", "rating"]
        if header is None or [h.strip() for h in header[:4]] != expected:
            raise SudokuDataError(f"{path}:1: header {header} is not {','.join(expected)}")
        for row in reader:
            number = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < 4:
                log.report(path, number, f"{len(row)} columns; expected {len(expected)}")
                continue
            try:
                question = parse_grid(row[1].strip(), size)
                size = size or int(round(len(question) ** 0.5))
                answer = parse_grid(row[2].strip(), size)
                rating = int(row[3])
            except ValueError as error:
                log.report(path, number, str(error))
                continue
            puzzles.append(question)
            solutions.append(answer)
            ratings.append(rating)
            lines.append(number)
    size = size or 9
    result = PuzzleFile(
        str(path),
        size,
        _stack(puzzles, size),
        np.asarray(lines, dtype=np.int64),
        solutions=_stack(solutions, size),
        ratings=np.asarray(ratings, dtype=np.int64),
    )
    result = _drop_conflicts(result, log)
    wrong = ~valid_solutions(result.puzzles, result.solutions, size)
    for row in np.flatnonzero(wrong):
        log.report(path, int(result.lines[row]), "the answer does not solve the question", WRONG_ANSWER)
    result = result.select(np.flatnonzero(~wrong)) if wrong.any() else result
    log.finish()
    result.problems = log.sorted()
    return result


def read_puzzles(
    path: str | Path,
    size: int | None = None,
    on_error: OnError = "skip",
    format: Literal["auto", "lines", "csv"] = "auto",
) -> PuzzleFile:
    """Read ``path`` in ``format`` (``auto``: CSV for a ``.csv`` suffix, lines otherwise)."""
    if not Path(path).is_file():
        raise SudokuDataError(f"{path}: no such puzzle file")
    reader = read_csv if file_format(path, format) == "csv" else read_lines
    return reader(path, size=size, on_error=on_error)


def file_format(path: str | Path, format: Literal["auto", "lines", "csv"] = "auto") -> Literal["lines", "csv"]:
    """The layout ``path`` is read in: ``format``, or with ``auto`` CSV for a ``.csv`` suffix."""
    if format != "auto":
        return format
    return "csv" if str(path).lower().endswith(".csv") else "lines"


def _stack(grids: list[np.ndarray], size: int) -> np.ndarray:
    if not grids:
        return np.zeros((0, size * size), dtype=np.uint8)
    return np.stack(grids).astype(np.uint8)
