"""The ``sudoku`` data set builder: puzzles from files or the generator, labelled,
split, augmented and written in the core's format (:mod:`rrcore.data.format`).

Layout written (that of the HRM/TRM/URM Sudoku builders): one set ``all`` per
split; inputs and labels (N, cells) uint8 tokens (0 pad, 1 blank, digit + 1),
labels hold the full solution (givens included, as in the references);
``ignore_label_id`` 0; a single puzzle identifier 0 (Sudoku uses no per-puzzle
embedding); one group per original puzzle whose puzzles are the original and
its ``num_aug`` augmentations (training split only). Beside the arrays,
``all__ratings.npy`` (N,) int64 holds each example's difficulty (the solver's
guess count, or the CSV ``rating`` column) for the evaluator's buckets.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np

from rr_sudoku.augment import SudokuBatchAugmenter, augment
from rr_sudoku.generator import DifficultyTarget, GenerationError, generate_many
from rr_sudoku.grid import BLANK_TOKEN, PAD_TOKEN, geometry, size_of_length, to_tokens
from rr_sudoku.reader import (
    NO_SOLUTION,
    SEVERAL_SOLUTIONS,
    ProblemLog,
    PuzzleFile,
    SudokuDataError,
    file_format,
    read_puzzles,
)
from rr_sudoku.solver import label_many
from rrcore.api import SplitWriter, cached_build, progress, source_stamp

BUILDER_VERSION = 2
"""Bump when the output for a given config changes (it is part of the cache key)."""

RATINGS_FILE = "all__ratings.npy"


@attrs.define
class SudokuDataConfig:
    """``[data] plugin = "sudoku"``.

    ``source = "files"``: puzzles from ``train_path`` (one-per-line or CSV, see
    :mod:`rr_sudoku.reader`) and ``test_path``; with no ``test_path`` the train
    file is shuffled by ``seed`` and ``test_size`` puzzles are held out for test.
    ``train_size``/``test_size`` subsample (seeded; 0 = all).
    ``source = "generate"``: ``train_size`` and ``test_size`` new puzzles of
    ``size`` x ``size`` with ``givens`` givens (0 = minimal) and a guess count in
    ``[min_guesses, max_guesses]`` (-1 = no upper bound).
    ``num_aug`` augmentations per training puzzle written to disk; ``online_augment``
    draws a fresh one for every training row of every batch on the device instead
    (:class:`rr_sudoku.augment.SudokuBatchAugmenter`; with ``num_aug = 0`` the built set is the
    puzzles alone, and it builds nothing anew). ``on_error`` says whether a
    malformed puzzle (bad line, contradictory givens, no or several solutions) is
    skipped and counted or rejects the whole build. ``jobs`` worker processes for
    labelling and generating (0 = all CPUs; does not change the result).

    ``validation_size``: choose settings without looking at the test puzzles. The run is
    evaluated on this many further puzzles of the training pool (``train_path``'s left
    over after the train and held-out test puzzles, or generated apart from both) in place
    of the test split; the training puzzles are the ones the same config with
    ``validation_size = 0`` trains on, so the setting picked on validation is then run
    once, unchanged but for ``validation_size = 0``, for the test figure. Needs
    ``train_size`` > 0 (a pool left over).
    """

    source: Literal["files", "generate"] = "files"
    size: int = 9
    train_path: str = ""
    test_path: str = ""
    format: Literal["auto", "lines", "csv"] = "auto"
    train_size: int = 0
    test_size: int = 0
    givens: int = 0
    min_guesses: int = 0
    max_guesses: int = -1
    num_aug: int = 0
    online_augment: bool = False
    seed: int = 0
    on_error: Literal["skip", "reject"] = "skip"
    jobs: int = 0
    validation_size: int = 0


@attrs.define
class Puzzles:
    """Labelled puzzles: digits (N, cells), solutions (N, cells), ratings (N,)."""

    puzzles: np.ndarray
    solutions: np.ndarray
    ratings: np.ndarray

    def __len__(self) -> int:
        return len(self.puzzles)


def _check(config: SudokuDataConfig) -> None:
    try:
        geometry(config.size)
    except ValueError as error:
        raise SudokuDataError(f"[data] size: {error}") from None
    if config.source == "files" and not config.train_path:
        raise SudokuDataError('[data] source = "files" needs train_path')
    if config.source == "files" and not config.test_path and config.test_size <= 0:
        raise SudokuDataError("[data] without test_path, test_size (> 0) puzzles of train_path are held out for test")
    if config.source == "generate" and (config.train_size <= 0 or config.test_size <= 0):
        raise SudokuDataError('[data] source = "generate" needs train_size and test_size > 0')
    if config.num_aug < 0 or config.train_size < 0 or config.test_size < 0 or config.validation_size < 0:
        raise SudokuDataError("[data] num_aug, train_size, test_size and validation_size must be >= 0")
    if config.validation_size and not config.train_size:
        raise SudokuDataError(
            "[data] validation_size needs train_size > 0: the validation puzzles are the training "
            "pool's left over after the training ones (with train_size = 0 every puzzle trains)"
        )


def _checked_stamp(path: str) -> dict[str, object]:
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise SudokuDataError(f"{path}: no such puzzle file")
    if not resolved.is_file():
        raise SudokuDataError(f"{path}: is a folder, not a puzzle file")
    stamp = source_stamp(resolved)
    if not stamp["bytes"]:
        raise SudokuDataError(f"{path}: the puzzle file is empty")
    return stamp


def cache_key(config: SudokuDataConfig) -> dict[str, object]:
    """Everything a build depends on: config (less ``jobs`` and ``online_augment``, which
    change no file), builder version, source files."""
    values = attrs.asdict(config)
    values.pop("jobs")
    values.pop("online_augment")
    if not values["validation_size"]:  # the key of every set built before validation splits
        values.pop("validation_size")
    sources = [path for path in ([config.train_path, config.test_path] if config.source == "files" else []) if path]
    key: dict[str, object] = {
        "builder": "sudoku",
        "version": BUILDER_VERSION,
        "config": values,
        "sources": [_checked_stamp(path) for path in sources],
    }
    if any(file_format(path, config.format) == "csv" for path in sources):
        # CSV sets built before their puzzles were proven unique may hold puzzles with
        # several solutions: a key of their own (line files' keys, and caches, unchanged).
        key["csv_solutions"] = "proven unique"
    return key


# -- collecting puzzles ------------------------------------------------------------------


def _take_labelled(
    file: PuzzleFile, order: np.ndarray, wanted: int, problems: ProblemLog, config: SudokuDataConfig, name: str
) -> tuple[Puzzles, int]:
    """The first ``wanted`` well-formed puzzles of ``file`` in ``order`` (0 = all), labelled.

    Returns the puzzles (in file order) and how far into ``order`` it went, so a
    held-out split can continue from there.
    """
    asked = wanted
    wanted = wanted or len(order)
    chosen: list[int] = []
    solutions, ratings = [], []
    position = 0
    bar = progress(min(wanted, len(order)), f"sudoku: labelling {name}", unit="puzzles")
    while len(chosen) < wanted and position < len(order):
        batch = order[position : position + (wanted - len(chosen))]
        position += len(batch)
        # Every puzzle is solved to prove its solution unique, a CSV's too: its answer
        # (checked by the reader to solve the question) may not be the only one.
        labels = label_many(file.puzzles[batch], jobs=config.jobs, progress=bar.update)
        good = labels.solutions == 1
        if file.solutions is not None:  # CSV: the file carries answers and ratings
            grids, rates = file.solutions[batch], file.ratings[batch]
        else:
            grids, rates = labels.grids, labels.guesses
        for row in np.flatnonzero(~good):
            reason = NO_SOLUTION if labels.solutions[row] == 0 else SEVERAL_SOLUTIONS
            problems.report(file.path, int(file.lines[batch[row]]), reason, reason)
        if problems.on_error == "reject":
            problems.finish()
        chosen.extend(batch[good].tolist())
        solutions.append(grids[good])
        ratings.append(rates[good])
    bar.close()
    if not chosen or len(chosen) < asked:
        raise SudokuDataError(
            f"{file.path}: only {len(chosen)} usable puzzles for the {name} split, "
            f"{asked or 'all'} asked for; {_rejections(file.path, problems)}"
        )
    cells = file.puzzles.shape[1]
    sort = np.argsort(chosen, kind="stable")
    rows = np.asarray(chosen, dtype=np.int64)[sort]
    solutions_all = np.concatenate(solutions) if solutions else np.zeros((0, cells), np.uint8)
    ratings_all = np.concatenate(ratings) if ratings else np.zeros(0, np.int64)
    return Puzzles(
        file.puzzles[rows], solutions_all[sort].astype(np.uint8), ratings_all[sort].astype(np.int64)
    ), position


def _rejections(path: str, problems: ProblemLog) -> str:
    """How many puzzles of ``path`` were rejected, per reason, with the first of each."""
    counts = problems.counts(path)
    if not counts:
        return "the file holds no puzzles"
    first = {}
    for problem in problems.sorted():
        if problem.path == path:
            first.setdefault(problem.reason, problem)
    parts = []
    for reason, count in counts.items():
        problem = first[reason]
        where = f"{problem.path}:{problem.line}"
        detail = where if problem.message == reason else f"{where}: {problem.message}"
        parts.append(f"{count} {reason} (first at {detail})")
    return "rejected: " + ", ".join(parts)


def _read(path: str, config: SudokuDataConfig, problems: ProblemLog) -> PuzzleFile:
    file = read_puzzles(path, size=config.size, on_error=config.on_error, format=config.format)
    problems.problems.extend(file.problems)
    return file


def _test_from_file(config: SudokuDataConfig, problems: ProblemLog) -> Puzzles:
    """The test puzzles of ``test_path``: ``test_size`` of them in a seeded order, or all."""
    test_file = _read(config.test_path, config, problems)
    test_order = np.arange(len(test_file))
    if config.test_size:
        test_order = np.random.default_rng([config.seed, 1]).permutation(len(test_file))
    return _take_labelled(test_file, test_order, config.test_size, problems, config, "test")[0]


def collect_from_files(config: SudokuDataConfig, problems: ProblemLog) -> tuple[Puzzles, Puzzles]:
    """Train and evaluation puzzles from the configured files (see :class:`SudokuDataConfig`):
    the held-out test puzzles, or with ``validation_size`` the validation ones."""
    rng = np.random.default_rng([config.seed, 0])
    train_file = _read(config.train_path, config, problems)
    if config.test_path:
        if not config.validation_size:  # else the validation puzzles (below) stand in; the file is not read
            test = _test_from_file(config, problems)
        rest = rng.permutation(len(train_file)) if config.train_size else np.arange(len(train_file))
    else:
        order = rng.permutation(len(train_file))
        test, used = _take_labelled(train_file, order, config.test_size, problems, config, "test")
        rest = order[used:] if config.train_size else np.sort(order[used:])
    train, used = _take_labelled(train_file, rest, config.train_size, problems, config, "train")
    if config.validation_size:
        test, _ = _take_labelled(train_file, rest[used:], config.validation_size, problems, config, "validation")
    return train, test


def collect_generated(config: SudokuDataConfig) -> tuple[Puzzles, Puzzles]:
    """Generated train and evaluation puzzles (test, or with ``validation_size`` validation);
    puzzles that repeat an earlier split's (or each other) are replaced, so each is held out."""
    target = DifficultyTarget(
        givens=config.givens,
        min_guesses=config.min_guesses,
        max_guesses=None if config.max_guesses < 0 else config.max_guesses,
    )
    splits = []
    seen: set[bytes] = set()
    streams = [("train", config.train_size), ("test", config.test_size)]
    if config.validation_size:  # a stream of its own: train and test stay as without it
        streams.append(("validation", config.validation_size))
    for stream, count in streams:
        kept: list[tuple[np.ndarray, np.ndarray, int]] = []
        bar = progress(count, f"sudoku: generating {stream}", unit="puzzles")
        start = 0
        for _ in range(50):  # rounds; each draws only as many as are still missing
            missing = count - len(kept)
            if not missing:
                break
            puzzles, solutions, guesses = generate_many(
                config.size, missing, config.seed, target, stream=f"{stream}:{start}", jobs=config.jobs
            )
            start += missing
            for puzzle, solution, rating in zip(puzzles, solutions, guesses, strict=True):
                key = puzzle.tobytes()
                if key not in seen:
                    seen.add(key)
                    kept.append((puzzle, solution, int(rating)))
                    bar.update(1)
        bar.close()
        if len(kept) < count:
            raise SudokuDataError(
                f"could only generate {len(kept)} distinct {config.size}x{config.size} "
                f"{stream} puzzles of {count}; ask for fewer or more givens"
            )
        splits.append(
            Puzzles(
                np.stack([k[0] for k in kept]),
                np.stack([k[1] for k in kept]),
                np.asarray([k[2] for k in kept], dtype=np.int64),
            )
        )
    return splits[0], splits[-1]


# -- writing -----------------------------------------------------------------------------


def write_puzzles(
    directory: Path, config: SudokuDataConfig, puzzles: Puzzles, num_aug: int, extra: dict[str, object]
) -> None:
    """Write one split: each puzzle and ``num_aug`` augmentations as one group."""
    per_group = 1 + num_aug
    geo = geometry(config.size)
    with (
        SplitWriter(directory, geo.cells, dtype=np.uint8) as writer,
        progress(len(puzzles), f"sudoku: writing {directory.name}", unit="puzzles") as bar,
    ):
        for index, (puzzle, solution) in enumerate(zip(puzzles.puzzles, puzzles.solutions, strict=True)):
            grids, answers = [puzzle[None]], [solution[None]]
            if num_aug:
                rng = np.random.default_rng([config.seed, 2, index])
                more_grids, more_answers = augment(puzzle, solution, num_aug, rng)
                grids.append(more_grids)
                answers.append(more_answers)
            writer.add_group(
                np.zeros(per_group, dtype=np.int32),
                to_tokens(np.concatenate(grids)),
                to_tokens(np.concatenate(answers)),
            )
            bar.update(1)
        writer.finish(
            pad_id=PAD_TOKEN,
            ignore_label_id=PAD_TOKEN,
            vocab_size=geo.vocab_size,
            num_puzzle_identifiers=1,  # Sudoku uses no per-puzzle embedding
            extra={
                "sudoku": {**extra, "size": config.size, "examples": writer.num_examples, "blank_token": BLANK_TOKEN}
            },
        )
    np.save(directory / RATINGS_FILE, np.repeat(puzzles.ratings, per_group))


def _report_skipped(problems: ProblemLog) -> None:
    """Say on stderr which puzzles were skipped and why (the first ten)."""
    skipped = problems.sorted()
    if not skipped:
        return
    reasons = ", ".join(f"{count} {reason}" for reason, count in problems.counts().items())
    lines = [f"sudoku: skipped {len(skipped)} puzzles ({reasons}):"] + [f"  {p}" for p in skipped[:10]]
    sys.stderr.write("\n".join(lines) + "\n")


def batch_augmenter(config: SudokuDataConfig, metadata: Any) -> SudokuBatchAugmenter | None:
    """The ``sudoku`` data set's batch augmenter: with ``online_augment``, fresh symmetries
    of every training batch for the grid size of the built data (``metadata.seq_len``)."""
    if not config.online_augment:
        return None
    try:
        size = size_of_length(metadata.seq_len)
    except ValueError as error:
        raise SudokuDataError(f"[data] online_augment: {error}") from None
    return SudokuBatchAugmenter(size)


def build_dataset(config: SudokuDataConfig, cache_dir: Path) -> Path:
    """The ``sudoku`` data set factory: build (or reuse from ``cache_dir``) the data set
    ``config`` describes and return its folder."""
    _check(config)

    def build(folder: Path) -> None:
        problems = ProblemLog(config.on_error)
        if config.source == "generate":
            try:
                train, test = collect_generated(config)
            except SudokuDataError:
                raise
            except (GenerationError, ValueError) as error:
                raise SudokuDataError(f"[data] {error}") from None
            rating = "guesses"
        else:
            train, test = collect_from_files(config, problems)
            rating = "csv rating" if file_format(config.train_path, config.format) == "csv" else "guesses"
        problems.finish()
        _report_skipped(problems)
        skipped = problems.sorted()
        extra = {
            "rating": rating,
            "skipped": len(skipped),
            "rejected": problems.counts(),
            "problems": [str(p) for p in skipped[:20]],
        }
        if config.validation_size:  # the "test" split holds the validation puzzles
            extra["evaluated_on"] = "validation"
        write_puzzles(folder / "train", config, train, config.num_aug, extra)
        write_puzzles(folder / "test", config, test, 0, extra)

    name = f"sudoku{config.size}x{config.size}"
    folder = cached_build(cache_dir, name, cache_key(config), build)
    if config.validation_size:  # so that no figure on validation passes for a test figure
        print(
            f"sudoku: evaluating on {config.validation_size} validation puzzles of the training pool "
            f"(data.validation_size), not on the test puzzles; set it to 0 for the test figure",
            file=sys.stderr,
        )
    return folder
