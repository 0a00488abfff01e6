"""The maze builder and evaluator: any shortest path counts, broken or long ones do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rr_maze import plugin
from rr_maze.builder import MazeDataConfig, build_dataset
from rr_maze.evaluator import MazeEvalConfig, MazeEvaluator, valid_optimal_paths
from rr_maze.maze import (
    CHARSET,
    GOAL,
    OPEN,
    PATH,
    START,
    WALL,
    label_mazes,
    shortest_path_lengths,
    to_text,
)

from rrcore.api import dihedral
from rrcore.contracts.protocols import EvalContext
from rrcore.contracts.registry import load_registry
from rrcore.data.format import validate_split
from rrcore.data.loader import PuzzleDataset

# A room with a pillar: from S to G takes 8 moves along many staircases.
ROOM = """\
#######
#S    #
#     #
#  #  #
#     #
#    G#
#######"""


def parse(text: str) -> np.ndarray:
    return np.array([[CHARSET.index(c) + 1 for c in line] for line in text.splitlines()], dtype=np.int64)


def judge(prediction: str) -> bool:
    """Whether a prediction drawn as text (the room with ``o`` on the claimed path) passes."""
    grid = torch.from_numpy(parse(ROOM))[None]
    preds = torch.from_numpy(parse(prediction))[None]
    shortest = torch.from_numpy(shortest_path_lengths(parse(ROOM)[None]))
    return bool(valid_optimal_paths(grid, preds, shortest)[0])


def test_any_shortest_path_is_accepted():
    assert shortest_path_lengths(parse(ROOM)[None]).tolist() == [8]
    along_the_top = """\
#######
#Soooo#
#    o#
#  # o#
#    o#
#    G#
#######"""
    down_the_left = """\
#######
#S    #
#o    #
#o #  #
#o    #
#ooooG#
#######"""
    staircase = """\
#######
#So   #
# ooo #
#  #o #
#   oo#
#    G#
#######"""
    assert judge(along_the_top) and judge(down_the_left) and judge(staircase)


@pytest.mark.parametrize(
    "name, prediction",
    [
        (
            "gap",
            """\
#######
#Soo o#
#    o#
#  # o#
#    o#
#    G#
#######""",
        ),
        (
            "too long: a simple path of 10 moves",
            """\
#######
#S    #
#o    #
#o #  #
#o ooo#
#ooo G#
#######""",
        ),
        (
            "both ways round (S and G have two path neighbours)",
            """\
#######
#Soooo#
#o   o#
#o # o#
#o   o#
#ooooG#
#######""",
        ),
        (
            "a stray extra cell",
            """\
#######
#Soooo#
#    o#
#  # o#
#o   o#
#    G#
#######""",
        ),
        ("no path", ROOM),
    ],
)
def test_broken_or_long_paths_are_rejected(name, prediction):
    assert not judge(prediction), name


def test_a_path_through_a_wall_is_rejected():
    # The only 8-move route through the pillar cell, drawn with 'o' over the wall.
    grid = parse(ROOM)
    preds = grid.copy()
    for cell in [(1, 2), (1, 3), (2, 3), (3, 3), (4, 3), (4, 4), (5, 4)]:
        preds[cell] = PATH
    assert grid[3, 3] == WALL
    shortest = torch.from_numpy(shortest_path_lengths(grid[None]))
    assert not valid_optimal_paths(torch.from_numpy(grid)[None], torch.from_numpy(preds)[None], shortest)[0]
    # The same cells with the pillar removed form a valid shortest path.
    grid[3, 3] = OPEN
    assert valid_optimal_paths(torch.from_numpy(grid)[None], torch.from_numpy(preds)[None], shortest)[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    config = MazeDataConfig(train_size=12, test_size=40, seed=5)
    return build_dataset(config, tmp_path_factory.mktemp("maze-cache"))


def test_registered_through_the_hooks():
    registry = load_registry(entry_point_group=None, extra_modules=[plugin])
    assert registry.get("dataset", "maze").config_class is MazeDataConfig
    assert registry.get("evaluator", "maze").factory is MazeEvaluator


def test_builder_writes_the_maze_hard_layout_with_augmented_groups(built):
    metadata, sets = validate_split(built / "train")
    assert (metadata.vocab_size, metadata.seq_len, metadata.num_puzzle_identifiers) == (6, 900, 1)
    train = sets["all"]
    assert train.inputs.shape == (12 * 8, 900) and len(train.group_indices) == 13
    # Each group holds one maze's eight symmetric versions, labels transformed alike.
    first = np.asarray(train.inputs[:8]).reshape(8, 30, 30)
    first_labels = np.asarray(train.labels[:8]).reshape(8, 30, 30)
    for transform in range(8):
        assert np.array_equal(first[transform], dihedral(first[0], transform))
        assert np.array_equal(first_labels[transform], dihedral(first_labels[0], transform))
    test_metadata, test_sets = validate_split(built / "test")
    assert test_sets["all"].inputs.shape == (40, 900)  # test mazes are not augmented
    ratings = np.load(built / "test" / "all__ratings.npy")
    assert ratings.min() > 110


def test_builder_reads_csv_files(tmp_path, built):
    _, sets = validate_split(built / "test")
    inputs = np.asarray(sets["all"].inputs).reshape(-1, 30, 30)
    labels = np.asarray(sets["all"].labels).reshape(-1, 30, 30)
    for split, rows in (("train", range(0, 10)), ("test", range(10, 15))):
        lines = ["source,question,answer,rating"] + [f"s,{to_text(inputs[i])},{to_text(labels[i])},1" for i in rows]
        (tmp_path / f"{split}.csv").write_text("\n".join(lines) + "\n")
    folder = build_dataset(
        MazeDataConfig(source="csv", csv_dir=str(tmp_path), train_size=0, test_size=0), tmp_path / "cache"
    )
    _, test = validate_split(folder / "test")
    assert np.array_equal(np.asarray(test["all"].inputs), inputs[10:15].reshape(5, -1))
    _, train = validate_split(folder / "train")
    assert train["all"].inputs.shape == (80, 900)


def evaluate(folder, preds_for):
    data = PuzzleDataset(folder / "test", global_batch_size=16)
    context = EvalContext(metadata=data.metadata, data_dir=folder / "test")
    evaluator = MazeEvaluator(MazeEvalConfig(), context)
    evaluator.begin_eval(folder)
    for batch in data.eval_batches():
        evaluator.update_batch(batch, {"preds": preds_for(batch)})
    return evaluator.result()


def test_evaluator_on_a_built_split(built):
    assert evaluate(built, lambda batch: batch["labels"]) == {
        "exact_accuracy": 1.0,
        "optimal_path": 1.0,
        "count": 40.0,
    }  # the padded last batch is not counted

    def one_wrong_wall(batch):  # a wall predicted open: not exact, still a shortest path
        preds = batch["labels"].clone()
        preds[:, 0] = OPEN
        return preds

    assert evaluate(built, one_wrong_wall) == {"exact_accuracy": 0.0, "optimal_path": 1.0, "count": 40.0}

    def gap_in_even_rows(batch):  # drop the first path cell of rows with an even index
        preds = batch["labels"].clone()
        first_path_cell = (preds == PATH).int().argmax(-1)
        broken = batch["index"] % 2 == 0
        preds[broken, first_path_cell[broken]] = OPEN
        return preds

    assert evaluate(built, gap_in_even_rows) == {"exact_accuracy": 0.5, "optimal_path": 0.5, "count": 40.0}


def test_start_and_goal_tokens_are_distinct_from_path(built):
    # The label keeps S and G where the input has them.
    _, sets = validate_split(built / "test")
    inputs, labels = np.asarray(sets["all"].inputs), np.asarray(sets["all"].labels)
    assert np.array_equal(inputs == START, labels == START) and np.array_equal(inputs == GOAL, labels == GOAL)


def test_evaluator_counts_other_shortest_paths_of_generated_mazes(built):
    # Label each test maze transposed and transpose back: the tie-break prefers left
    # to up instead, so mazes with several shortest paths get a different one.
    _, sets = validate_split(built / "test")
    inputs = np.asarray(sets["all"].inputs).reshape(-1, 30, 30)
    labels = np.asarray(sets["all"].labels).reshape(-1, 30, 30)
    others = dihedral(label_mazes(dihedral(inputs, 6)), 6)  # 6: transpose (rrcore.data.grids ids)
    differs = (others != labels).reshape(len(labels), -1).any(1)
    assert differs.any()
    others = torch.from_numpy(others.reshape(len(others), -1).astype(np.int64))
    result = evaluate(built, lambda batch: others[batch["index"].clamp_max(len(others) - 1)])
    assert result["optimal_path"] == 1.0
    assert result["exact_accuracy"] == pytest.approx(1 - differs.mean())
