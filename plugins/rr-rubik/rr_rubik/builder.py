"""The ``rubik`` data set builder: scrambles sampled from the distance table, labelled
with optimal solutions (token layout: :mod:`rr_rubik.tokens`).

Scrambles are drawn from the distance table: by default a distance uniformly from
``distances`` (1..11), then a state uniformly among those at that distance, so
the rare distance-11 states are as frequent as distance-3 ones. Train and test
states are disjoint wherever a distance has enough states for both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import attrs
import numpy as np

from rr_rubik import cube
from rr_rubik.tokens import ANSWER_LEN, BLANK, PAD, SEQ_LEN, STATE_LEN, VOCAB_SIZE, encode_solutions, encode_states
from rrcore.api import DataSourceError, SplitWriter, at_least, cached_build

BUILDER_VERSION = 1


@attrs.define
class RubikDataConfig:
    """``[data] plugin = "rubik"``.

    ``sampling``: ``uniform_distance`` draws a distance uniformly from ``distances``
    and then a state at that distance; ``uniform_state`` draws states uniformly
    among all states whose distance is in ``distances`` (mostly distances 8-10).
    ``cache_dir`` ("" = the run's cache) also holds the 3.7 MB distance table.
    """

    train_size: int = attrs.field(default=100_000, validator=at_least(1))
    test_size: int = attrs.field(default=1_100, validator=at_least(1))
    distances: list[int] = attrs.field(factory=lambda: list(range(1, cube.GODS_NUMBER + 1)))
    sampling: Literal["uniform_distance", "uniform_state"] = "uniform_distance"
    seed: int = 0
    cache_dir: str = ""


def examples(states: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, labels)`` (N, 18) for state indices, labelled with optimal solutions."""
    perm_table, ori_table = cube.move_tables()
    solutions = cube.optimal_solutions(states, table, perm_table, ori_table)
    count = len(states)
    inputs = np.concatenate([encode_states(states), np.full((count, ANSWER_LEN), BLANK)], axis=1)
    labels = np.concatenate([np.full((count, STATE_LEN), PAD), encode_solutions(solutions)], axis=1)
    return inputs, labels


def sample_states(
    table: np.ndarray, counts: list[int], distances: list[int], sampling: str, rng: np.random.Generator
) -> list[np.ndarray]:
    """State indices for each requested count (e.g. train, test), disjoint where possible."""
    if not distances or min(distances) < 1 or max(distances) > cube.GODS_NUMBER:
        raise ValueError(f"distances must lie in 1..{cube.GODS_NUMBER}, got {distances}")
    distances = sorted(set(distances))
    if sampling == "uniform_distance":
        picks = [rng.choice(distances, size=n) for n in counts]
    else:
        sizes = np.array([np.count_nonzero(table == d) for d in distances], dtype=np.float64)
        picks = [rng.choice(distances, size=n, p=sizes / sizes.sum()) for n in counts]
    results = [np.empty(n, dtype=np.int64) for n in counts]
    for distance in distances:
        pool = np.flatnonzero(table == distance)
        wanted = [np.flatnonzero(p == distance) for p in picks]
        total = sum(len(w) for w in wanted)
        if total <= len(pool):  # disjoint: one shuffled draw split among the sets
            drawn = rng.choice(pool, size=total, replace=False)
            offset = 0
            for result, where in zip(results, wanted):
                result[where] = drawn[offset : offset + len(where)]
                offset += len(where)
        else:  # too few states at this distance (1-3): repeats are unavoidable
            for result, where in zip(results, wanted):
                result[where] = rng.choice(pool, size=len(where), replace=True)
    return results


def _write(folder: Path, states: np.ndarray, table: np.ndarray) -> None:
    inputs, labels = examples(states, table)
    with SplitWriter(folder, SEQ_LEN) as writer:
        for row in range(len(states)):  # one puzzle per example, one group per puzzle
            writer.add_group([0], inputs[row], labels[row])
        writer.finish(
            pad_id=PAD,
            ignore_label_id=PAD,
            vocab_size=VOCAB_SIZE,
            num_puzzle_identifiers=1,
            extra={"task": "rubik2x2", "state_len": STATE_LEN, "answer_len": ANSWER_LEN},
        )
    # Beside the arrays for the evaluator: each row's optimal length (from the table,
    # not from the label), and the histogram for people reading the folder.
    np.save(folder / "all__distances.npy", table[states].astype(np.int32))
    histogram = np.bincount(table[states], minlength=cube.GODS_NUMBER + 1).tolist()
    (folder / "distances.json").write_text(json.dumps({"count_by_distance": histogram}))


def build_dataset(config: RubikDataConfig, cache_dir: Path) -> Path:
    """The ``rubik`` data set factory: build (or find in the cache) the train/test splits."""
    cache_dir = Path(config.cache_dir).expanduser() if config.cache_dir else Path(cache_dir)
    settings = attrs.asdict(config)
    settings.pop("cache_dir")  # where the cache lives does not change what is built
    key = {"config": settings, "version": BUILDER_VERSION}

    def write(folder: Path) -> None:
        table = cube.distance_table(cache_dir)
        rng = np.random.default_rng(config.seed)
        try:
            train, test = sample_states(
                table, [config.train_size, config.test_size], config.distances, config.sampling, rng
            )
        except ValueError as error:
            raise DataSourceError(f"[data] {error}") from None
        _write(folder / "train", train, table)
        _write(folder / "test", test, table)

    return cached_build(cache_dir, "rubik2x2", key, write)
