"""``rr rubik table`` (``rr data build rubik`` builds the data set); also ``python -m rr_rubik``."""

from __future__ import annotations

import click

from rrcore.api import output_folder


@click.group("rubik")
def rubik_group() -> None:
    """The 2x2x2 cube task (build data sets with rr data build rubik)."""


@rubik_group.command("table")
@click.option("--cache-dir", default=None, help="where the table is cached (default: rr's cache)")
def table_command(cache_dir: str | None) -> None:
    """Build (or load) the distance table and print its histogram, time and memory."""
    import time
    import tracemalloc

    import numpy as np

    from rr_rubik import cube
    from rrcore.api import default_cache_dir

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
    click.echo(
        f"BFS time {seconds:.2f} s; peak memory allocated by the build {peak:.0f} MiB; "
        f"table {table.nbytes / 2**20:.1f} MiB in {folder / cube.TABLE_FILE}"
    )
