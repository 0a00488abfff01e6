"""The maze task of rr solve and test-time selection: parsing, the shortest-path check, symmetries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from rr_maze.maze import MazeSettings, generate_mazes, render
from rr_maze.task import MazeTask

from rrcore.contracts.protocols import PuzzleError
from rrcore.data.grids import dihedral


@pytest.fixture
def mazes():
    inputs, labels = generate_mazes(3, MazeSettings(width=10, height=10, hard_threshold=5), np.random.default_rng(0))
    return MazeTask(None, SimpleNamespace(seq_len=100, extra={})), inputs, labels


def test_a_typed_maze_reads_back_and_only_a_shortest_path_passes_the_check(mazes):
    task, inputs, labels = mazes
    tokens = task.parse(render(inputs[0]) + "\n")
    assert (tokens == inputs[0].reshape(-1)).all()
    assert task.check(tokens, labels[0].reshape(-1)).ok
    verdict = task.check(tokens, tokens)  # nothing marked
    assert not verdict.ok and "not a shortest path" in verdict.message


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace("S", " "), "0 cells are S (start); a maze has exactly one"),
        (lambda text: text[:-3], "row 10 has 7 cells; the maze is 10 wide"),
        (lambda text: text.replace("#", "x", 1), "row 1: bad character 'x' at column 1"),
    ],
)
def test_a_bad_maze_is_named_in_one_line(mazes, edit, message):
    task, inputs, _ = mazes
    with pytest.raises(PuzzleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        task.parse(edit(render(inputs[0])))


def test_augmented_answers_map_back_to_the_original_maze(mazes):
    task, inputs, labels = mazes
    copies, order = task.augment(inputs.reshape(3, -1), 5, np.random.default_rng(1))
    assert order[0] == 0 and len(set(order)) == 5
    answers = np.stack([dihedral(labels, t) for t in order], axis=1).reshape(3, 5, -1)
    assert (task.invert(answers, order) == labels.reshape(3, 1, -1)).all()
