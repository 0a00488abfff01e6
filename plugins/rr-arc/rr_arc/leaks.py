"""The leak check: training tasks that would put held-out test answers into training.

A training task leaks when it shares an id with a test task or holds one of the
test subset's held-out pairs (ARC-AGI-2 training holds ARC-AGI-1 evaluation tasks).
The builder refuses such a build unless ``drop_leaks`` (remove those pairs) or
``allow_leak`` (keep them).
"""

from __future__ import annotations

import numpy as np

from rr_arc.reader import ArcTask, grid_key
from rrcore.api import DataSourceError


class ArcLeakError(DataSourceError):
    """Training tasks that contain held-out test pairs of the test subset."""


class HeldOut:
    """The test subset's held-out pairs, to recognise them inside training tasks."""

    def __init__(self, test_tasks: list[ArcTask]) -> None:
        self.ids = {task.task_id for task in test_tasks}
        self._pairs: dict[bytes, tuple[str, int]] = {}
        self._inputs: dict[bytes, tuple[str, int]] = {}
        for task in test_tasks:
            for i, (grid, output) in enumerate(zip(task.test_inputs, task.test_outputs)):
                if output is None:  # unknown answer: the input alone identifies the pair
                    self._inputs[grid_key(grid)] = (task.task_id, i)
                else:
                    self._pairs[grid_key(grid) + b"->" + grid_key(output)] = (task.task_id, i)

    def match(self, grid: np.ndarray, output: np.ndarray) -> tuple[str, int] | None:
        """(test task id, test index) of the held-out pair equal to this pair, if any."""
        key = grid_key(grid)
        return self._pairs.get(key + b"->" + grid_key(output)) or self._inputs.get(key)


def _known_pairs(task: ArcTask) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(task.train) + [(g, o) for g, o in zip(task.test_inputs, task.test_outputs) if o is not None]


def find_leaks(held: HeldOut, train_tasks: list[ArcTask]) -> list[tuple[ArcTask, str]]:
    """Training tasks that would reveal a held-out test pair of ``held``, with the reason.

    A task leaks when its id is a test task's id, or when one of its pairs (input
    and output; the input alone where the test output is unknown) equals a held-out
    test pair. Content is compared, so a copy under another id is caught too.
    """
    leaks = []
    for task in train_tasks:
        if task.task_id in held.ids:
            leaks.append((task, f"{task.subset}/{task.task_id} has the id of test task {task.task_id}"))
            continue
        for grid, output in _known_pairs(task):
            match = held.match(grid, output)
            if match:
                leaks.append(
                    (task, f"{task.subset}/{task.task_id} contains test pair {match[1]} of test task {match[0]}")
                )
                break
    return leaks


def drop_leaked(task: ArcTask, held: HeldOut) -> ArcTask | None:
    """``task`` without its pairs equal to held-out test pairs (None if nothing usable is left)."""
    if task.task_id in held.ids:
        return None
    train = [(g, o) for g, o in task.train if not held.match(g, o)]
    tests = [(g, o) for g, o in zip(task.test_inputs, task.test_outputs) if o is None or not held.match(g, o)]
    if not train:  # a training task needs demonstrations; its test pairs are optional
        return None
    return ArcTask(
        task_id=task.task_id,
        subset=task.subset,
        train=train,
        test_inputs=[g for g, _ in tests],
        test_outputs=[o for _, o in tests],
    )


def drop_leaking_pairs(
    held: HeldOut, candidates: list[ArcTask], leaks: list[tuple[ArcTask, str]]
) -> tuple[list[ArcTask], int]:
    """``candidates`` with the leaking ones cleaned by :func:`drop_leaked`, and how many
    of them were dropped whole."""
    leaking = {id(task) for task, _ in leaks}
    kept, dropped_tasks = [], 0
    for task in candidates:
        cleaned = drop_leaked(task, held) if id(task) in leaking else task
        if cleaned is None:
            dropped_tasks += 1
        else:
            kept.append(cleaned)
    return kept, dropped_tasks
