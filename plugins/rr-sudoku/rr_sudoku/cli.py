"""``rr sudoku``: build data sets, label puzzle files and generate puzzles.

Also runs without the core CLI: ``python -m rr_sudoku.cli label FILE --jobs 2``.
"""

from __future__ import annotations

import sys
import time
import typing
from pathlib import Path

import attrs
import click

from rr_sudoku.builder import Progress, SudokuDataConfig


class BarProgress(Progress):
    """Draws each build stage as a click progress bar on stderr."""

    def __init__(self) -> None:
        self._bar = None

    def stage(self, label: str, total: int) -> None:
        self.done()
        self._bar = click.progressbar(length=max(total, 1), label=label.ljust(18), file=sys.stderr,
                                      show_pos=True, show_eta=True)
        self._bar.__enter__()

    def advance(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def done(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _config_options(function: typing.Callable) -> typing.Callable:
    """One ``--option`` per field of :class:`SudokuDataConfig` (unset ones keep the defaults)."""
    hints = typing.get_type_hints(SudokuDataConfig)
    for field in reversed(attrs.fields(SudokuDataConfig)):
        hint = hints[field.name]
        if typing.get_origin(hint) is typing.Literal:
            kind: typing.Any = click.Choice(typing.get_args(hint))
        else:
            kind = hint
        option = "--" + field.name.replace("_", "-")
        function = click.option(option, field.name, type=kind, default=None,
                                help=f"[data] {field.name} (default {field.default!r})")(function)
    return function


@click.group()
def sudoku() -> None:
    """Sudoku data sets: build, label and generate puzzles."""


@sudoku.command()
@click.argument("experiment", required=False, type=click.Path(dir_okay=False, exists=True))
@_config_options
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache folder (default: rr's cache).")
def build(experiment: str | None, cache_dir: str | None, **values: typing.Any) -> None:
    """Build (or find in the cache) a Sudoku data set and print its folder.

    Starts from EXPERIMENT's [data] section when given, else from the defaults;
    options override single keys, e.g.

    rr sudoku build --train-path puzzles.txt --test-size 1000 --train-size 1000 --num-aug 1000
    """
    from rr_sudoku.builder import build_dataset
    from rr_sudoku.readers import SudokuDataError
    from rrcore.data import default_cache_dir

    raw: dict[str, typing.Any] = {}
    if experiment:
        import tomllib

        raw = dict(tomllib.loads(Path(experiment).read_text()).get("data", {}))
        if raw.pop("plugin", "sudoku") != "sudoku":
            raise click.UsageError(f"{experiment}: [data] plugin is not 'sudoku'")
    raw.update({key: value for key, value in values.items() if value is not None})
    from rrcore.config import ConfigError, structure

    try:  # the core's strict structuring: unknown keys and wrong types are named
        config = structure(raw, SudokuDataConfig, experiment or "rr sudoku build", "data")
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    started = time.perf_counter()
    try:
        folder = build_dataset(config, Path(cache_dir) if cache_dir else default_cache_dir(), BarProgress())
    except SudokuDataError as error:
        raise click.ClickException(str(error)) from None
    _summarise(folder, time.perf_counter() - started)
    click.echo(str(folder))


def _summarise(folder: Path, seconds: float) -> None:
    import json

    total = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    for split in ("train", "test"):
        meta = json.loads((folder / split / "dataset.json").read_text())
        info = meta.get("sudoku", {})
        click.echo(f"{split}: {meta['total_groups']} puzzles, {info.get('examples')} examples "
                   f"({info.get('size')}x{info.get('size')})", err=True)
    if info.get("skipped"):
        click.echo(f"skipped {info['skipped']} malformed puzzles:", err=True)
        for problem in info.get("problems", [])[:10]:
            click.echo(f"  {problem}", err=True)
    click.echo(f"{total / 1e6:.1f} MB on disk, {seconds:.1f} s", err=True)


@sudoku.command()
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
@click.option("--jobs", type=int, default=0, help="Worker processes (0: all CPUs).")
@click.option("--limit", type=int, default=0, help="Label only the first LIMIT puzzles (0: all).")
@click.option("--size", type=click.Choice(["4", "9"]), default=None, help="Grid size (default: from the file).")
@click.option("--output", type=click.Path(dir_okay=False), help="Write 'puzzle,solution,guesses' CSV lines here.")
def label(path: str, jobs: int, limit: int, size: str | None, output: str | None) -> None:
    """Solve every puzzle of PATH, prove uniqueness and rate difficulty (solver guesses);
    prints the time taken (a benchmark of the solver)."""
    import numpy as np

    from rr_sudoku.readers import read_puzzles
    from rr_sudoku.solver import default_jobs, label_many

    started = time.perf_counter()
    puzzles = read_puzzles(path, size=int(size) if size else None)
    selected = puzzles.puzzles[:limit] if limit else puzzles.puzzles
    read_seconds = time.perf_counter() - started
    jobs = jobs or default_jobs()
    with click.progressbar(length=len(selected), label="labelling", file=sys.stderr) as bar:
        labels = label_many(selected, jobs=jobs, progress=bar.update)
    seconds = time.perf_counter() - started - read_seconds
    unique = int((labels.solutions == 1).sum())
    click.echo(f"{len(selected)} puzzles ({len(puzzles.problems)} malformed lines skipped) labelled in "
               f"{seconds:.1f} s with {jobs} processes ({1000 * seconds / max(len(selected), 1):.2f} ms/puzzle; "
               f"reading {read_seconds:.1f} s)")
    click.echo(f"unique {unique}, no solution {int((labels.solutions == 0).sum())}, "
               f"several {int((labels.solutions == 2).sum())}; guesses mean {labels.guesses.mean():.1f}, "
               f"median {np.median(labels.guesses):.0f}, max {labels.guesses.max()}")
    if output:
        with open(output, "w") as handle:
            for puzzle, grid, guesses in zip(selected, labels.grids, labels.guesses, strict=True):
                handle.write(f"{''.join(map(str, puzzle))},{''.join(map(str, grid))},{guesses}\n")


@sudoku.command()
@click.option("--size", type=click.Choice(["4", "9"]), default="9")
@click.option("--count", type=int, default=10)
@click.option("--seed", type=int, default=0)
@click.option("--givens", type=int, default=0, help="Stop removing givens at this many (0: minimal puzzle).")
@click.option("--min-guesses", type=int, default=0)
@click.option("--max-guesses", type=int, default=-1, help="-1: no upper bound.")
@click.option("--jobs", type=int, default=0)
def generate(size: str, count: int, seed: int, givens: int, min_guesses: int, max_guesses: int, jobs: int) -> None:
    """Print COUNT new puzzles with unique solutions, one per line ('.' blank)."""
    from rr_sudoku.generator import DifficultyTarget, GenerationError, generate_many

    target = DifficultyTarget(givens=givens, min_guesses=min_guesses,
                              max_guesses=None if max_guesses < 0 else max_guesses)
    try:
        puzzles, _, guesses = generate_many(int(size), count, seed, target, jobs=jobs)
    except (GenerationError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    for puzzle, rating in zip(puzzles, guesses, strict=True):
        click.echo("".join(str(d) if d else "." for d in puzzle) + f"  # guesses {rating}")


if __name__ == "__main__":
    sudoku()
