"""``rr sudoku``: label puzzle files and generate puzzles (``rr data build sudoku`` builds data sets).

Also runs without the core CLI: ``python -m rr_sudoku.cli label FILE --jobs 2``.
"""

from __future__ import annotations

import time
import typing
from pathlib import Path

import click

from rrcore.api import InputError, input_file


@click.group()
def sudoku() -> None:
    """Sudoku puzzles: label and generate them (build data sets with rr data build sudoku)."""


def _report(message: str, shown: int, total: int, limit: int = 10) -> None:
    """Warn on stderr about one puzzle, the first ``limit`` of ``total`` only."""
    if shown < limit:
        click.echo(f"rr: warning: {message}", err=True)
    elif shown == limit:
        click.echo(f"rr: warning: ... and {total - limit} more", err=True)


@sudoku.command()
@click.argument("path")
@click.option("--jobs", type=int, default=0, help="Worker processes (0: all CPUs).")
@click.option("--limit", type=int, default=0, help="Label only the first LIMIT puzzles (0: all).")
@click.option("--size", type=click.Choice(["4", "9"]), default=None, help="Grid size (default: from the file).")
@click.option(
    "--output",
    help="Write the puzzles with a unique solution here as CSV "
    "(source,question,answer,rating: what rr data build sudoku reads).",
)
def label(path: str, jobs: int, limit: int, size: str | None, output: str | None) -> None:
    """Solve every puzzle of PATH, prove uniqueness and rate difficulty (solver guesses);
    prints the time taken (a benchmark of the solver).

    Puzzles with no solution or several are reported by line and never written to --output.
    """
    import numpy as np

    from rr_sudoku.reader import NO_SOLUTION, SEVERAL_SOLUTIONS, SudokuDataError, read_puzzles
    from rr_sudoku.solver import default_jobs, label_many
    from rrcore.api import progress

    source = input_file(path, "puzzle file")
    target = _output_file(output) if output else None
    started = time.perf_counter()
    try:
        puzzles = read_puzzles(source, size=int(size) if size else None)
    except SudokuDataError as error:
        raise InputError(str(error)) from None
    if not len(puzzles):
        first = f"; first problem: {puzzles.problems[0]}" if puzzles.problems else ""
        raise InputError(f"{source}: no puzzles to label ({len(puzzles.problems)} unusable lines{first})")
    selected = puzzles.select(np.arange(min(limit, len(puzzles)) if limit else len(puzzles)))
    read_seconds = time.perf_counter() - started
    jobs = jobs or default_jobs()
    with progress(len(selected), "sudoku: labelling", unit="puzzles") as bar:
        labels = label_many(selected.puzzles, jobs=jobs, progress=bar.update)
    seconds = time.perf_counter() - started - read_seconds
    unique = labels.solutions == 1
    per_puzzle = 1000 * seconds / len(selected)
    click.echo(
        f"{len(selected)} puzzles ({len(puzzles.problems)} malformed lines skipped) labelled in "
        f"{seconds:.1f} s with {jobs} processes ({per_puzzle:.2f} ms/puzzle; "
        f"reading {read_seconds:.1f} s)"
    )
    click.echo(
        f"unique {int(unique.sum())}, no solution {int((labels.solutions == 0).sum())}, "
        f"several {int((labels.solutions == 2).sum())}; guesses mean {labels.guesses.mean():.1f}, "
        f"median {np.median(labels.guesses):.0f}, max {labels.guesses.max()}"
    )
    not_unique = np.flatnonzero(~unique)
    for shown, row in enumerate(not_unique):
        reason = NO_SOLUTION if labels.solutions[row] == 0 else SEVERAL_SOLUTIONS
        kept = "; not written" if target else ""
        _report(f"{source}:{selected.lines[row]}: {reason}{kept}", shown, len(not_unique))
    if target:
        _write_labels(target, source, selected, labels)


def _output_file(output: str) -> Path:
    target = Path(output).expanduser()
    if target.is_dir():
        raise InputError(f"{target}: is a folder; --output needs a file name")
    if not target.parent.is_dir():
        raise InputError(f"{target}: the folder {target.parent} does not exist")
    return target


def _write_labels(target: Path, source: Path, puzzles: typing.Any, labels: typing.Any) -> None:
    """The uniquely solvable puzzles as ``source,question,answer,rating`` CSV rows."""
    import csv

    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "question", "answer", "rating"])
        rows = zip(puzzles.puzzles, puzzles.lines, labels.solutions, labels.grids, labels.guesses, strict=True)
        for puzzle, line, count, grid, guesses in rows:
            if count == 1:
                question = "".join(str(digit) if digit else "." for digit in puzzle)
                writer.writerow([f"{source.name}:{line}", question, "".join(map(str, grid)), int(guesses)])


@sudoku.command()
@click.option("--size", type=click.Choice(["4", "9"]), default="9")
@click.option("--count", type=int, default=10)
@click.option("--seed", type=int, default=0)
@click.option("--givens", type=int, default=0, help="Stop removing givens at this many (0: minimal puzzle).")
@click.option("--min-guesses", type=int, default=0)
@click.option("--max-guesses", type=int, default=-1, help="-1: no upper bound.")
@click.option("--jobs", type=int, default=0)
def generate(size: str, count: int, seed: int, givens: int, min_guesses: int, max_guesses: int, jobs: int) -> None:
    """Print COUNT new puzzles with unique solutions, one per line ('.' blank), each
    followed by '  # guesses N' (its difficulty; 'label' and rr data build sudoku read these lines)."""
    from rr_sudoku.generator import DifficultyTarget, GenerationError, generate_many

    if count < 1:
        raise InputError(f"--count must be at least 1, got {count}")
    target = DifficultyTarget(
        givens=givens, min_guesses=min_guesses, max_guesses=None if max_guesses < 0 else max_guesses
    )
    try:
        puzzles, _, guesses = generate_many(int(size), count, seed, target, jobs=jobs)
    except (GenerationError, ValueError) as error:
        raise InputError(str(error)) from None
    for puzzle, rating in zip(puzzles, guesses, strict=True):
        click.echo("".join(str(d) if d else "." for d in puzzle) + f"  # guesses {rating}")


if __name__ == "__main__":
    sudoku()
