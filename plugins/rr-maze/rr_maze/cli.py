"""``rr maze bench`` (``rr data build maze`` builds the data set); also ``python -m rr_maze``."""

from __future__ import annotations

import click

from rrcore.api import InputError


@click.group("maze")
def maze_group() -> None:
    """The Maze-Hard task (build data sets with rr data build maze)."""


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
    click.echo(
        f"{count} mazes of 30x30 in {seconds:.2f} s: {count / seconds:.0f} mazes/s (labels included); "
        f"shortest paths {lengths.min()}-{lengths.max()} moves, mean {lengths.mean():.1f}"
    )
    if show:
        click.echo(render(labels[0]))
