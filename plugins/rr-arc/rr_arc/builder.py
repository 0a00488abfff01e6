"""Building the ARC data set the way the papers train on it.

Protocol (HRM/TRM builders): every task of the training subsets contributes all
its pairs with known outputs to ``train/``; every task of the test subset
contributes its demonstration pairs to ``train/`` too and only its test pairs are
held out in ``test/``. Each task is augmented ``num_aug`` times (8 dihedral
transforms x colour permutations with 0 fixed; duplicates by content removed);
the original and each augmented version is a puzzle with its own identifier
(0 is blank) and all versions of a task form one group. In ``train/`` every
example but one random one per puzzle is translated to a random place on the
30x30 canvas (as the references do); ``test/`` stays at the top-left unless
``translate_test``.

Leak check: a training task that shares an id with a test task, or that holds one
of the held-out test pairs (ARC-AGI-2 training holds ARC-AGI-1 evaluation tasks),
would put the answers into training. The build refuses unless ``allow_leak``.

Besides the core's arrays, each split holds ``arc_augmentations.npz`` (per puzzle
identifier: task, transform id, colour permutation; in ``test/`` also per example:
puzzle, test index, translation offset) and ``test/arc_test_tasks.json`` (the
original test pairs), which the ``arc`` evaluator reads.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
import zlib
from pathlib import Path
from typing import Literal

import attrs
import numpy as np

from rr_arc.grids import (
    MAX_GRID_SIZE,
    PAD_TOKEN,
    SEQ_LEN,
    VOCAB_SIZE,
    encode,
    random_colour_permutation,
    token_lut,
    translate,
)
from rr_arc.leaks import ArcLeakError, HeldOut, drop_leaking_pairs, find_leaks
from rr_arc.reader import ArcFormatError, ArcTask, input_files, read_subset
from rrcore.api import SplitWriter, cached_build, dihedral, progress, source_stamp

BUILDER_VERSION = 1
AUGMENT_RETRIES_FACTOR = 5  # draws per wanted augmentation before giving up on duplicates
SET_NAME = "all"
AUGMENTATIONS_FILE = "arc_augmentations.npz"
TEST_TASKS_FILE = "arc_test_tasks.json"
LAYOUTS = (
    "<prefix>_<subset>_challenges.json files (combined layout) or <subset>/ folders of "
    "<task_id>.json files (per-task layout)"
)
_SWAPS_AXES = (False, True, False, True, False, False, True, True)  # transform id -> rows and cols swap


@attrs.define
class ArcDataConfig:
    """``[data] plugin = "arc"``.

    ``path`` holds the subsets in either layout (``layout = "auto"`` detects it):
    ``<prefix>_<subset>_challenges.json`` (+ ``_solutions.json``) or folders
    ``<subset>/`` / ``data/<subset>/`` of ``<task_id>.json``. ``train_subsets``
    give training tasks; the ``test_subset``'s demonstration pairs are always
    trained on and its test pairs held out. ``num_aug`` augmented versions per
    task besides the original. ``train_on_test_pairs`` also trains on the test
    pairs of training-only tasks (the references do). A training task holding a
    held-out test pair stops the build unless ``drop_leaks`` (remove those pairs,
    and tasks sharing a test task's id) or ``allow_leak`` (keep them, warning loudly).
    """

    path: str = "data/arc"
    prefix: str = "arc-agi"
    layout: Literal["auto", "combined", "per_task"] = "auto"
    train_subsets: list[str] = attrs.field(factory=lambda: ["training", "evaluation", "concept"])
    test_subset: str = "evaluation"
    num_aug: int = 1000
    seed: int = 0
    translate: bool = True
    translate_test: bool = False
    train_on_test_pairs: bool = True
    drop_leaks: bool = False
    allow_leak: bool = False


@attrs.define
class TaskPlan:
    """One task's augmentations: ``transforms`` (A,) and ``perms`` (A, 10); row 0 is the original."""

    task: ArcTask
    is_test: bool
    transforms: np.ndarray
    perms: np.ndarray


# -- choosing tasks ----------------------------------------------------------------------


def select_tasks(config: ArcDataConfig) -> tuple[list[ArcTask], list[ArcTask], dict]:
    """Read the subsets and return (training-only tasks, test tasks, a summary).

    Training tasks repeated across subsets (same id or same content, e.g.
    ARC-AGI-1 training inside ARC-AGI-2 training) are kept once; test-subset tasks
    listed among ``train_subsets`` enter only as test tasks.
    """
    path = check_path(config)
    test_tasks = read_subset(path, config.test_subset, prefix=config.prefix, layout=config.layout)
    candidates = []
    for subset in config.train_subsets:
        if subset != config.test_subset:
            candidates += read_subset(path, subset, prefix=config.prefix, layout=config.layout)
    candidates, leaks, dropped_tasks = _handle_leaks(config, test_tasks, candidates)
    train_tasks, duplicates = _unique_tasks(candidates, leaks)
    summary = {
        "test_tasks": len(test_tasks),
        "train_tasks": len(train_tasks),
        "duplicate_train_tasks_dropped": duplicates,
        "leaking_tasks_kept": len(leaks),
        "leaking_tasks_dropped_whole": dropped_tasks,
    }
    return train_tasks, test_tasks, summary


def _handle_leaks(
    config: ArcDataConfig, test_tasks: list[ArcTask], candidates: list[ArcTask]
) -> tuple[list[ArcTask], list[tuple[ArcTask, str]], int]:
    """The training candidates, the leaks kept and the tasks dropped whole, as
    ``drop_leaks`` and ``allow_leak`` say; a leak neither allows is :class:`ArcLeakError`."""
    held = HeldOut(test_tasks)  # the test pairs hashed once, for finding and for dropping
    leaks = find_leaks(held, candidates)
    if not leaks:
        return candidates, leaks, 0
    lines = "\n  ".join(reason for _, reason in leaks[:10])
    more = f"\n  ... and {len(leaks) - 10} more" if len(leaks) > 10 else ""
    message = (
        f"{len(leaks)} training task(s) of {config.train_subsets} contain held-out test pairs of the "
        f"test subset {config.test_subset!r}:\n  {lines}{more}"
    )
    if config.drop_leaks:
        kept, dropped_tasks = drop_leaking_pairs(held, candidates, leaks)
        sys.stderr.write(
            f"arc: drop_leaks = true: removed the leaking pairs ({dropped_tasks} task(s) dropped whole) of {message}\n"
        )
        return kept, [], dropped_tasks
    if not config.allow_leak:
        raise ArcLeakError(
            message + "\nRemove that subset from train_subsets, set drop_leaks = true to train "
            "without those pairs, or allow_leak = true to build anyway (the test "
            "score then counts answers seen in training)."
        )
    warnings.warn("LEAK ALLOWED: " + message, stacklevel=3)
    sys.stderr.write(f"WARNING: building with a test leak (allow_leak = true): {message}\n")
    return candidates, leaks, 0


def _unique_tasks(candidates: list[ArcTask], leaks: list[tuple[ArcTask, str]]) -> tuple[list[ArcTask], int]:
    """The candidates less repeats of an earlier one's id or content (leaking tasks kept
    as they are), and how many were dropped."""
    seen_ids, seen_content, train_tasks = set(), set(), []
    duplicates = 0
    leaking = {id(task) for task, _ in leaks}
    for task in candidates:
        key = task.content_key()
        if id(task) not in leaking and (task.task_id in seen_ids or key in seen_content):
            duplicates += 1
            continue
        seen_ids.add(task.task_id)
        seen_content.add(key)
        train_tasks.append(task)
    return train_tasks, duplicates


# -- augmentation ------------------------------------------------------------------------


def _task_rng(config: ArcDataConfig, task: ArcTask, stream: int) -> np.random.Generator:
    # Seeded per task (not by position) so a task's augmentations do not change when others are added.
    return np.random.default_rng([config.seed, zlib.crc32(f"{task.subset}/{task.task_id}".encode()), stream])


def plan_augmentations(task: ArcTask, num_aug: int, rng: np.random.Generator, is_test: bool = False) -> TaskPlan:
    """The original plus up to ``num_aug`` augmentations whose grids all differ.

    Two augmentations are duplicates when every grid of the task comes out
    identical (e.g. a symmetric task under a flip, or permutations differing only
    on colours the task does not use); draws stop after ``AUGMENT_RETRIES_FACTOR *
    num_aug`` tries, so tasks with few colours can end with fewer.
    """
    grids = [g for pair in task.train for g in pair] + task.test_inputs
    grids += [g for g in task.test_outputs if g is not None]
    shapes, flats = [], []
    for transform in range(8):
        transformed = [dihedral(g, transform) for g in grids]
        shapes.append(b"".join(bytes(g.shape) for g in transformed))
        flats.append(np.concatenate([g.ravel() for g in transformed]))

    def content(transform: int, perm: np.ndarray) -> bytes:
        return shapes[transform] + perm[flats[transform]].tobytes()

    identity = np.arange(10, dtype=np.uint8)
    seen = {content(0, identity)}
    transforms, perms = [0], [identity]
    for _ in range(AUGMENT_RETRIES_FACTOR * num_aug):
        if len(transforms) > num_aug:
            break
        transform = int(rng.integers(8))
        perm = random_colour_permutation(rng)
        key = content(transform, perm)
        if key not in seen:
            seen.add(key)
            transforms.append(transform)
            perms.append(perm)
    return TaskPlan(
        task=task,
        is_test=is_test,
        transforms=np.asarray(transforms, dtype=np.uint8),
        perms=np.stack(perms).astype(np.uint8),
    )


def _examples(plan: TaskPlan, split: str, config: ArcDataConfig) -> list[tuple[np.ndarray, np.ndarray | None]]:
    task = plan.task
    if split == "test":
        return list(zip(task.test_inputs, task.test_outputs)) if plan.is_test else []
    pairs: list[tuple[np.ndarray, np.ndarray | None]] = list(task.train)
    if not plan.is_test and config.train_on_test_pairs:
        pairs += [(g, o) for g, o in zip(task.test_inputs, task.test_outputs) if o is not None]
    return pairs


def _offsets(
    plan: TaskPlan,
    pairs: list[tuple[np.ndarray, np.ndarray | None]],
    rng: np.random.Generator,
    enabled: bool,
    keep_one: bool,
) -> np.ndarray:
    """(A, E, 2) top-left offsets: uniform over places where both grids of the pair fit."""
    num_aug, num_pairs = len(plan.transforms), len(pairs)
    offsets = np.zeros((num_aug, num_pairs, 2), dtype=np.int64)
    if not enabled or num_pairs == 0:
        return offsets
    swaps = np.asarray(_SWAPS_AXES)[plan.transforms]  # (A,)
    for e, (grid, output) in enumerate(pairs):
        rows = max(grid.shape[0], output.shape[0] if output is not None else 0)
        cols = max(grid.shape[1], output.shape[1] if output is not None else 0)
        room_rows = MAX_GRID_SIZE - np.where(swaps, cols, rows)  # (A,)
        room_cols = MAX_GRID_SIZE - np.where(swaps, rows, cols)
        offsets[:, e, 0] = np.floor(rng.random(num_aug) * (room_rows + 1))
        offsets[:, e, 1] = np.floor(rng.random(num_aug) * (room_cols + 1))
    if keep_one:  # the references leave one random example of every puzzle at the top-left
        offsets[np.arange(num_aug), rng.integers(num_pairs, size=num_aug)] = 0
    return offsets


def encode_task(
    plan: TaskPlan, pairs: list[tuple[np.ndarray, np.ndarray | None]], offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Token arrays (A * E, 900) of inputs and labels, puzzle-major (all pairs of aug 0 first)."""
    num_aug, num_pairs = len(plan.transforms), len(pairs)
    inputs = np.zeros((num_aug, num_pairs, SEQ_LEN), dtype=np.uint8)
    labels = np.zeros((num_aug, num_pairs, SEQ_LEN), dtype=np.uint8)
    luts = np.stack([token_lut(p) for p in plan.perms])  # (A, 12)
    for transform in np.unique(plan.transforms):
        augs = np.flatnonzero(plan.transforms == transform)
        rows = np.arange(len(augs))[:, None, None]
        for e, (grid, output) in enumerate(pairs):
            for grids_out, source in ((inputs, grid), (labels, output)):
                if source is None:  # unknown test output: all padding, never scored
                    continue
                canvas = encode(dihedral(source, int(transform)))
                coloured = luts[augs][rows, canvas[None]]  # (n, 30, 30)
                moved = translate(coloured, offsets[augs, e])
                grids_out[augs, e] = moved.reshape(len(augs), SEQ_LEN)
    return inputs.reshape(-1, SEQ_LEN), labels.reshape(-1, SEQ_LEN)


# -- writing -----------------------------------------------------------------------------


def build_arc(config: ArcDataConfig, output: Path) -> dict:
    """Write ``output/train`` and ``output/test``; returns a summary (also in ``arc_build_summary.json``)."""
    start = time.perf_counter()
    output = Path(output)
    train_tasks, test_tasks, summary = select_tasks(config)
    plans = _plan_tasks(config, [(t, False) for t in train_tasks] + [(t, True) for t in test_tasks])
    short = [p.task.task_id for p in plans if len(p.transforms) < config.num_aug + 1]
    num_identifiers = 1 + sum(len(p.transforms) for p in plans)
    first_identifier = np.cumsum([1] + [len(p.transforms) for p in plans])[:-1]
    task_table = _task_table(plans, first_identifier, num_identifiers)
    for split in ("train", "test"):
        counts = _write_split(config, output / split, split, plans, first_identifier, num_identifiers, task_table)
        summary.update({f"{split}_{name}": count for name, count in counts.items()})
    summary.update(
        num_puzzle_identifiers=num_identifiers,
        tasks_with_fewer_augmentations=len(short),
        build_seconds=round(time.perf_counter() - start, 1),
        size_bytes=sum(f.stat().st_size for f in output.rglob("*") if f.is_file()),
    )
    (output / "arc_build_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _plan_tasks(config: ArcDataConfig, tasks: list[tuple[ArcTask, bool]]) -> list[TaskPlan]:
    plans = []
    with progress(len(tasks), "arc: planning augmentations", unit="tasks") as bar:
        for task, is_test in tasks:
            plans.append(plan_augmentations(task, config.num_aug, _task_rng(config, task, 0), is_test))
            bar.update()
    return plans


def _task_table(plans: list[TaskPlan], first_identifier: np.ndarray, num_identifiers: int) -> dict[str, np.ndarray]:
    """Per task its id and subset, per puzzle identifier its task, transform and colours."""
    puzzle_task = np.full(num_identifiers, -1, dtype=np.int32)
    puzzle_transform = np.zeros(num_identifiers, dtype=np.uint8)
    puzzle_colours = np.tile(np.arange(10, dtype=np.uint8), (num_identifiers, 1))
    for index, (plan, first) in enumerate(zip(plans, first_identifier)):
        puzzle_task[first : first + len(plan.transforms)] = index
        puzzle_transform[first : first + len(plan.transforms)] = plan.transforms
        puzzle_colours[first : first + len(plan.transforms)] = plan.perms
    return {
        "task_ids": np.asarray([p.task.task_id for p in plans]),
        "task_subsets": np.asarray([p.task.subset for p in plans]),
        "puzzle_task": puzzle_task,
        "puzzle_transform": puzzle_transform,
        "puzzle_colours": puzzle_colours,
    }


def _write_split(
    config: ArcDataConfig,
    directory: Path,
    split: str,
    plans: list[TaskPlan],
    first_identifier: np.ndarray,
    num_identifiers: int,
    task_table: dict[str, np.ndarray],
) -> dict[str, int]:
    """Write one split with its augmentation table; returns its examples, puzzles and groups."""
    split_plans = [(p, f) for p, f in zip(plans, first_identifier) if _examples(p, split, config)]
    num_examples = sum(len(p.transforms) * len(_examples(p, split, config)) for p, _ in split_plans)
    example_puzzle, example_test_index, example_offset = [], [], []
    translate_split = config.translate if split == "train" else config.translate_test
    with (
        SplitWriter(directory, SEQ_LEN, dtype=np.uint8, set_name=SET_NAME) as writer,
        progress(len(split_plans), f"arc: writing {split}", unit="tasks") as bar,
    ):
        for plan, first in split_plans:  # every task's versions form one group
            pairs = _examples(plan, split, config)
            rng = _task_rng(config, plan.task, 1 if split == "train" else 2)
            offsets = _offsets(plan, pairs, rng, translate_split, keep_one=split == "train")
            task_inputs, task_labels = encode_task(plan, pairs, offsets)
            ids = first + np.arange(len(plan.transforms))
            writer.add_group(ids, task_inputs, task_labels, sizes=np.full(len(ids), len(pairs)))
            if split == "test":
                example_puzzle.append(np.repeat(ids, len(pairs)))
                example_test_index.append(np.tile(np.arange(len(pairs)), len(plan.transforms)))
                example_offset.append(offsets.reshape(-1, 2))
            bar.update()
        # Tokens are in range by construction; scanning them all again would take long
        # on the 1000-augmentation set.
        writer.finish(
            pad_id=PAD_TOKEN,
            ignore_label_id=PAD_TOKEN,
            vocab_size=VOCAB_SIZE,
            num_puzzle_identifiers=num_identifiers,
            extra={"total_puzzles": writer.num_puzzles, "builder": f"rr-arc {BUILDER_VERSION}"},
            check_tokens=num_examples * SEQ_LEN < 50_000_000,
        )
    extra = {}
    if split == "test":
        extra = {
            "example_puzzle": np.concatenate(example_puzzle or [np.zeros(0)]).astype(np.int32),
            "example_test_index": np.concatenate(example_test_index or [np.zeros(0)]).astype(np.int16),
            "example_offset": np.concatenate(example_offset or [np.zeros((0, 2))]).astype(np.uint8),
        }
        (directory / TEST_TASKS_FILE).write_text(json.dumps(_test_pairs(plans)))
    np.savez(directory / AUGMENTATIONS_FILE, **task_table, **extra)
    return {"examples": num_examples, "puzzles": writer.num_puzzles, "groups": len(split_plans)}


def _test_pairs(plans: list[TaskPlan]) -> dict[str, dict]:
    """The original test pairs of the test tasks (``arc_test_tasks.json``)."""
    return {
        p.task.task_id: {
            "subset": p.task.subset,
            "test": [
                {"input": g.tolist(), "output": None if o is None else o.tolist()}
                for g, o in zip(p.task.test_inputs, p.task.test_outputs)
            ],
        }
        for p in plans
        if p.is_test
    }


def cache_key(config: ArcDataConfig) -> dict:
    """Everything a build depends on: config, builder version, input files' sizes and times."""
    path = Path(config.path).expanduser()
    files = []
    for subset in dict.fromkeys([config.test_subset, *config.train_subsets]):
        for file in input_files(path, subset, prefix=config.prefix, layout=config.layout):
            files.append(list(source_stamp(file).values()))  # a list: the keys of sets built before
    return {"config": attrs.asdict(config), "version": BUILDER_VERSION, "files": files}


def check_path(config: ArcDataConfig) -> Path:
    """``config.path`` when it is a folder, else :class:`ArcFormatError` saying what it should hold."""
    root = Path(config.path).expanduser()
    if not root.is_dir():
        problem = "is a file, not a folder" if root.exists() else "no such folder"
        raise ArcFormatError(f"[data] path {root}: {problem}; it should hold the ARC subsets as {LAYOUTS}")
    return root


def build_dataset(config: ArcDataConfig, cache_dir: Path) -> Path:
    """The ``arc`` data set factory: build (or reuse) the set under ``cache_dir``."""
    check_path(config)
    return cached_build(cache_dir, "arc", cache_key(config), lambda folder: build_arc(config, folder))
