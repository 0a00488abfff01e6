"""rr-rubik's hook implementations: the ``rubik`` data set, evaluator and task, ``rr rubik``."""

from __future__ import annotations

import click

from rr_rubik.evaluator import RubikEvalConfig, RubikEvaluator
from rr_rubik.task import RubikDataConfig, build
from rrcore import hookimpl
from rrcore.cli_input import InputError, output_folder
from rrcore.registry import DatasetSpec, EvaluatorSpec, TaskSpec


@hookimpl
def rr_register_datasets() -> list[DatasetSpec]:
    return [DatasetSpec(name="rubik", factory=build, config_class=RubikDataConfig,
                        description="2x2x2 cube: scrambled state -> optimal half-turn solution (padded to 11)")]


@hookimpl
def rr_register_evaluators() -> list[EvaluatorSpec]:
    return [EvaluatorSpec(name="rubik", factory=RubikEvaluator, config_class=RubikEvalConfig,
                          description="2x2x2 solve and optimal rates, checked by simulating the predicted moves")]


@click.group("rubik")
def rubik_group() -> None:
    """The 2x2x2 cube task."""


@rubik_group.command("table")
@click.option("--cache-dir", default=None, help="where the table is cached (default: rr's cache)")
def table_command(cache_dir: str | None) -> None:
    """Build (or load) the distance table and print its histogram, time and memory."""
    import time
    import tracemalloc

    import numpy as np

    from rr_rubik import cube
    from rrcore.data import default_cache_dir

    folder = output_folder(cache_dir, "cache folder") if cache_dir else default_cache_dir()
    start = time.perf_counter()
    table = cube.build_distance_table()
    seconds = time.perf_counter() - start
    tracemalloc.start()  # a second build, traced: tracing slows it, so it is not the one timed
    cube.build_distance_table()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    cube.distance_table(folder)  # saves it when absent
    histogram = np.bincount(table).tolist()
    click.echo(f"states: {table.size:,}; by distance 0..{len(histogram) - 1}: {histogram}")
    click.echo(f"matches the known distribution: {tuple(histogram) == cube.KNOWN_DISTANCE_COUNTS}")
    click.echo(f"BFS time {seconds:.2f} s; peak memory allocated by the build {peak:.0f} MiB; "
               f"table {table.nbytes / 2**20:.1f} MiB in {folder / cube.TABLE_FILE}")


@rubik_group.command("build")
@click.option("--cache-dir", default=None, help="where data sets are cached")
@click.option("--train-size", type=int, default=RubikDataConfig().train_size)
@click.option("--test-size", type=int, default=RubikDataConfig().test_size)
@click.option("--seed", type=int, default=0)
def build_command(cache_dir: str | None, train_size: int, test_size: int, seed: int) -> None:
    """Build the data set with the default settings and print its folder."""
    from rrcore.data import default_cache_dir

    for option, size in (("--train-size", train_size), ("--test-size", test_size)):
        if size < 1:
            raise InputError(f"{option} must be at least 1, got {size}")
    cache = output_folder(cache_dir, "cache folder") if cache_dir else default_cache_dir()
    config = RubikDataConfig(train_size=train_size, test_size=test_size, seed=seed)
    click.echo(str(build(config, cache)))


@hookimpl
def rr_register_tasks() -> list[TaskSpec]:
    """Single scrambles for ``rr solve`` and readable predictions (rr_rubik.puzzle)."""
    from rr_rubik.puzzle import RubikPuzzleTask

    return [TaskSpec(name="rubik", factory=RubikPuzzleTask,
                     description="a 2x2x2 scramble (U R F half-turn moves) in, solving moves out; checks the "
                                 "cube is solved; no augmentations")]


@hookimpl
def rr_puzzle_view(dataset: str, metadata):
    """Draw the cube's faces and the predicted moves."""
    if dataset != "rubik":
        return None
    from rr_rubik.view import RubikView

    return RubikView()


@hookimpl
def rr_cli_commands(group: click.Group) -> None:
    group.add_command(rubik_group)
