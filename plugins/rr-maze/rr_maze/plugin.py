"""rr-maze's hook implementations: the ``maze`` data set and evaluator, ``rr maze``."""

from __future__ import annotations

import click

from rr_maze.data import MazeDataConfig, build
from rr_maze.evaluator import MazeEvalConfig, MazeEvaluator
from rrcore import hookimpl
from rrcore.cli_input import InputError, input_folder, output_folder
from rrcore.registry import DatasetSpec, EvaluatorSpec, TaskSpec


@hookimpl
def rr_register_datasets() -> list[DatasetSpec]:
    return [DatasetSpec(name="maze", factory=build, config_class=MazeDataConfig,
                        description="Maze-Hard style mazes (generated, or the hub CSV files): mark a shortest path")]


@hookimpl
def rr_register_evaluators() -> list[EvaluatorSpec]:
    return [EvaluatorSpec(name="maze", factory=MazeEvaluator, config_class=MazeEvalConfig,
                          description="maze exact accuracy and valid-shortest-path rate (any shortest path counts)")]


@hookimpl
def rr_register_tasks() -> list[TaskSpec]:
    """Single mazes for ``rr solve``, predictions and test-time selection (rr_maze.task)."""
    from rr_maze.task import MazeTask

    return [TaskSpec(name="maze", factory=MazeTask,
                     description="mazes as a text grid; checks for a shortest path; symmetries for voting")]


@click.group("maze")
def maze_group() -> None:
    """The Maze-Hard task."""


@maze_group.command("build")
@click.option("--cache-dir", default=None, help="where data sets are cached")
@click.option("--csv-dir", default=None,
              help="read train.csv/test.csv (hub layout) instead of generating")
@click.option("--train-size", type=int, default=MazeDataConfig().train_size)
@click.option("--test-size", type=int, default=MazeDataConfig().test_size)
@click.option("--seed", type=int, default=0)
def build_command(cache_dir: str | None, csv_dir: str | None, train_size: int, test_size: int, seed: int) -> None:
    """Build the data set (default settings otherwise) and print its folder."""
    from rr_maze.data import MazeDataError
    from rrcore.data import default_cache_dir

    if csv_dir:
        input_folder(csv_dir, "maze CSV folder")
    least = 0 if csv_dir else 1  # 0 takes a whole CSV file
    for option, size in (("--train-size", train_size), ("--test-size", test_size)):
        if size < least:
            raise InputError(f"{option} must be at least {least}, got {size}")
    cache = output_folder(cache_dir, "cache folder") if cache_dir else default_cache_dir()
    config = MazeDataConfig(source="csv" if csv_dir else "generate", csv_dir=csv_dir or "",
                            train_size=train_size, test_size=test_size, seed=seed)
    try:
        click.echo(str(build(config, cache)))
    except MazeDataError as error:
        raise InputError(str(error)) from None


@maze_group.command("bench")
@click.option("--count", type=int, default=1000, help="mazes to generate")
@click.option("--show", is_flag=True, help="print the first maze and its label")
def bench_command(count: int, show: bool) -> None:
    """Generate mazes with the default settings and print mazes per second."""
    import time

    import numpy as np

    from rr_maze.maze import MazeSettings, generate_mazes, render, shortest_path_lengths

    if count < 1:
        raise InputError(f"--count must be at least 1, got {count}")
    start = time.perf_counter()
    inputs, labels = generate_mazes(count, MazeSettings(), np.random.default_rng(0))
    seconds = time.perf_counter() - start
    lengths = shortest_path_lengths(inputs)
    click.echo(f"{count} mazes of 30x30 in {seconds:.2f} s: {count / seconds:.0f} mazes/s (labels included); "
               f"shortest paths {lengths.min()}-{lengths.max()} moves, mean {lengths.mean():.1f}")
    if show:
        click.echo(render(labels[0]))


@hookimpl
def rr_puzzle_view(dataset: str, metadata):
    """Draw mazes in colour, the predicted path over them."""
    if dataset != "maze":
        return None
    from rr_maze.view import MazeView

    return MazeView(metadata.seq_len)


@hookimpl
def rr_cli_commands(group: click.Group) -> None:
    group.add_command(maze_group)
