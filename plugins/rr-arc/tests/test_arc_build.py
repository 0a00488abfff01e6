"""The builder: the papers' protocol, augmentation without duplicates, leak refusal, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
from arc_testdata import write_combined
from rr_arc.builder import (
    AUGMENTATIONS_FILE,
    TEST_TASKS_FILE,
    ArcDataConfig,
    build_arc,
    build_dataset,
    plan_augmentations,
)
from rr_arc.grids import inverse_permutation
from rr_arc.leaks import ArcLeakError
from rr_arc.reader import ArcTask, read_subset

from rrcore.api import dihedral, inverse_dihedral
from rrcore.data.format import load_set, validate_split


def _config(arc_dir, **values) -> ArcDataConfig:
    return ArcDataConfig(
        path=str(arc_dir),
        train_subsets=["training", "evaluation"],
        test_subset="evaluation",
        num_aug=values.pop("num_aug", 6),
        **values,
    )


def _decode_train_example(tokens: np.ndarray, transform: int, perm: np.ndarray) -> np.ndarray:
    """The original grid of a training example: its colour cells' bounding box, de-augmented."""
    canvas = tokens.reshape(30, 30)
    rows, cols = np.nonzero(canvas >= 2)
    box = canvas[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert (box >= 2).all(), "a grid's cells are all colours: translation must not cut or scatter it"
    return inverse_dihedral(inverse_permutation(perm)[box - 2], transform)


def test_build_follows_the_protocol_and_decodes_back(arc_dir, tmp_path):
    summary = build_arc(_config(arc_dir), tmp_path / "out")
    train_meta, train_sets = validate_split(tmp_path / "out" / "train")
    test_meta, test_sets = validate_split(tmp_path / "out" / "test")
    assert (train_meta.vocab_size, train_meta.seq_len, train_meta.pad_id, train_meta.ignore_label_id) == (12, 900, 0, 0)
    assert train_meta.num_puzzle_identifiers == test_meta.num_puzzle_identifiers == 1 + 7 * 7  # 7 tasks x (1 + 6)
    train, test = train_sets["all"], test_sets["all"]
    # Groups: one per task; 3 training + 4 test tasks in train/, the 4 test tasks in test/.
    assert summary["train_groups"] == 7 and summary["test_groups"] == 4
    assert set(np.asarray(test.puzzle_identifiers)) <= set(np.asarray(train.puzzle_identifiers))
    table = dict(np.load(tmp_path / "out" / "train" / AUGMENTATIONS_FILE))
    tasks = {t.task_id: t for s in ("training", "evaluation") for t in read_subset(arc_dir, s)}
    test_ids = {t.task_id for t in read_subset(arc_dir, "evaluation")}
    for p, identifier in enumerate(np.asarray(train.puzzle_identifiers)):
        task = tasks[str(table["task_ids"][table["puzzle_task"][identifier]])]
        transform, perm = int(table["puzzle_transform"][identifier]), table["puzzle_colours"][identifier]
        # Test tasks bring only their demonstrations; training tasks their test pairs too.
        expected = list(task.train) + (
            [] if task.task_id in test_ids else list(zip(task.test_inputs, task.test_outputs))
        )
        start, end = train.puzzle_indices[p], train.puzzle_indices[p + 1]
        assert end - start == len(expected)
        for row, (grid, output) in zip(range(start, end), expected):
            np.testing.assert_array_equal(_decode_train_example(train.inputs[row], transform, perm), grid)
            np.testing.assert_array_equal(_decode_train_example(train.labels[row], transform, perm), output)
    held = json.loads((tmp_path / "out" / "test" / TEST_TASKS_FILE).read_text())
    assert set(held) == test_ids and len(held["12997ef3"]["test"]) == 2


def test_translation_moves_training_grids_but_not_test_grids(arc_dir, tmp_path):
    build_arc(_config(arc_dir, num_aug=20), tmp_path / "out")
    train = load_set(tmp_path / "out" / "train", "all")
    corners = np.asarray(train.inputs).reshape(-1, 30, 30)[:, 0, 0]
    assert (corners == 0).mean() > 0.5  # most training grids moved off the top-left corner
    test = load_set(tmp_path / "out" / "test", "all")
    assert (np.asarray(test.inputs).reshape(-1, 30, 30)[:, 0, 0] >= 2).all()
    table = dict(np.load(tmp_path / "out" / "test" / AUGMENTATIONS_FILE))
    assert (table["example_offset"] == 0).all()


def test_build_is_deterministic_per_seed(arc_dir, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        build_arc(_config(arc_dir, seed=seed), tmp_path / name)
    a, b, c = (np.load(tmp_path / n / "train" / "all__inputs.npy") for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_augmentations_are_distinct_and_duplicates_removed():
    rng = np.random.default_rng(0)
    # Symmetric under every dihedral transform and using one colour: only 9 distinct versions exist.
    plain = np.array([[0, 3, 0], [3, 3, 3], [0, 3, 0]], dtype=np.uint8)
    task = ArcTask("sym", "x", [(plain, plain)], [plain], [plain])
    plan = plan_augmentations(task, 100, rng)
    assert len(plan.transforms) == 9  # the original + the 8 other colours for 3
    asym = np.array([[1, 2, 0], [0, 0, 3]], dtype=np.uint8)
    plan = plan_augmentations(ArcTask("a", "x", [(asym, asym)], [asym], [None]), 200, rng)
    assert len(plan.transforms) == 201
    contents = {
        bytes(dihedral(p[asym], int(t)).shape) + dihedral(p[asym], int(t)).tobytes()
        for t, p in zip(plan.transforms, plan.perms)
    }
    assert len(contents) == 201
    assert plan.transforms[0] == 0 and (plan.perms[0] == np.arange(10)).all()  # the original comes first


def _leaky_training(arc_dir, shared_tasks, task_id: str) -> None:
    """Put evaluation task 00576224 (with its solution) into training under ``task_id``."""
    challenges, solutions = shared_tasks["training"]
    eval_challenges, eval_solutions = shared_tasks["evaluation"]
    challenges = {**challenges, task_id: eval_challenges["00576224"]}
    solutions = {**solutions, task_id: eval_solutions["00576224"]}
    write_combined(arc_dir, "training", challenges, solutions)


@pytest.mark.parametrize("task_id", ["00576224", "renamed0"])
def test_leak_is_refused_by_id_or_content(arc_dir, shared_tasks, tmp_path, task_id):
    _leaky_training(arc_dir, shared_tasks, task_id)
    config = ArcDataConfig(path=str(arc_dir), train_subsets=["training"], test_subset="evaluation", num_aug=2)
    with pytest.raises(ArcLeakError, match=f"training/{task_id} .*00576224"):
        build_arc(config, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_leak_allowed_warns_and_drop_removes_it(arc_dir, shared_tasks, tmp_path):
    _leaky_training(arc_dir, shared_tasks, "renamed0")
    base = dict(path=str(arc_dir), train_subsets=["training"], test_subset="evaluation", num_aug=0, translate=False)
    with pytest.warns(UserWarning, match="LEAK ALLOWED"):
        allowed = build_arc(ArcDataConfig(**base, allow_leak=True), tmp_path / "allowed")
    dropped = build_arc(ArcDataConfig(**base, drop_leaks=True), tmp_path / "dropped")
    assert allowed["leaking_tasks_kept"] == 1
    # The renamed copy brings 2 demonstrations + its test pair; dropping removes only the held-out pair.
    assert allowed["train_examples"] - dropped["train_examples"] == 1
    held = {bytes(r) for r in np.load(tmp_path / "dropped" / "test" / "all__labels.npy")}
    assert not held & {bytes(r) for r in np.load(tmp_path / "dropped" / "train" / "all__labels.npy")}
    assert held & {bytes(r) for r in np.load(tmp_path / "allowed" / "train" / "all__labels.npy")}


def test_dataset_factory_caches_by_config(arc_dir, tmp_path):
    first = build_dataset(_config(arc_dir), tmp_path / "cache")
    again = build_dataset(_config(arc_dir), tmp_path / "cache")
    other = build_dataset(_config(arc_dir, seed=3), tmp_path / "cache")
    assert first == again != other
    assert (first / "train" / "dataset.json").exists() and (first / "test" / AUGMENTATIONS_FILE).exists()
