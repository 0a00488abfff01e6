"""Reading ARC tasks from the two layouts users have.

*Combined* (the Kaggle / ARC Prize files, as in ``../shared/data/arc/``):
``<prefix>_<subset>_challenges.json`` maps task id to ``{"train": [{"input",
"output"}...], "test": [{"input"}...]}`` and ``<prefix>_<subset>_solutions.json``
maps task id to the list of test output grids (optional: without it the test
outputs are unknown, as in a competition's hidden test set).

*Per task* (the ARC-AGI and ARC-AGI-2 repositories): a folder ``<subset>/`` (or
``data/<subset>/``) of ``<task_id>.json`` files, each one task with the test
outputs inline.

Both give the same :class:`ArcTask` for the same task; every grid is checked
(rectangular, colours 0-9, 1x1 to 30x30) and a malformed one raises
:class:`ArcFormatError` naming the file, the task and the pair.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np

from rr_arc.grids import MAX_GRID_SIZE, NUM_COLOURS
from rrcore.api import DataSourceError

Layout = Literal["auto", "combined", "per_task"]


class ArcFormatError(DataSourceError):
    """A task file or grid that is not valid ARC data; the message names file, task and pair."""


@attrs.define(eq=False)
class ArcTask:
    """One ARC task: demonstration pairs and test pairs (outputs ``None`` when unknown)."""

    task_id: str
    subset: str
    train: list[tuple[np.ndarray, np.ndarray]]
    test_inputs: list[np.ndarray]
    test_outputs: list[np.ndarray | None]

    def same_content(self, other: ArcTask) -> bool:
        """True when both tasks hold identical grids in the same order."""
        return self.content_key() == other.content_key()

    def content_key(self) -> bytes:
        """Bytes that identify the task's grids (shapes and cells), for duplicate detection."""
        grids = [g for pair in self.train for g in pair] + self.test_inputs
        grids += [g for g in self.test_outputs if g is not None]
        return b"|".join(grid_key(g) for g in grids)


def grid_key(grid: np.ndarray) -> bytes:
    """Bytes identifying a grid exactly: its shape and its cells."""
    return bytes(grid.shape) + grid.tobytes()


def parse_grid(value: Any, where: str) -> np.ndarray:
    """Check and convert one JSON grid to a (rows, cols) uint8 array; ``where`` prefixes errors."""
    if not isinstance(value, list) or not value:
        raise ArcFormatError(f"{where}: a grid must be a non-empty list of rows, got {_short(value)}")
    if len(value) > MAX_GRID_SIZE:
        raise ArcFormatError(f"{where}: {len(value)} rows, more than the {MAX_GRID_SIZE} allowed")
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise ArcFormatError(f"{where}: row {r} must be a non-empty list of cells, got {_short(row)}")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise ArcFormatError(f"{where}: ragged rows (row {r} has {len(row)} cells, row 0 has {width})")
        for c, cell in enumerate(row):
            # bool is an int in Python, but true/false in a grid is a malformed file.
            if not isinstance(cell, int) or isinstance(cell, bool) or not 0 <= cell < NUM_COLOURS:
                raise ArcFormatError(f"{where}: cell ({r}, {c}) is {cell!r}, colours must be integers 0-9")
    if width > MAX_GRID_SIZE:
        raise ArcFormatError(f"{where}: {width} columns, more than the {MAX_GRID_SIZE} allowed")
    return np.asarray(value, dtype=np.uint8)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 40 else text[:37] + "..."


def parse_task(task_id: str, subset: str, raw: Any, source: str, solutions: list[Any] | None = None) -> ArcTask:
    """Build an :class:`ArcTask` from its JSON; test outputs from ``solutions`` or inline."""
    where = f"{source}: task {task_id}"
    if not isinstance(raw, dict) or not isinstance(raw.get("train"), list) or not isinstance(raw.get("test"), list):
        raise ArcFormatError(f"{where}: expected an object with 'train' and 'test' lists")
    train = []
    for i, pair in enumerate(raw["train"]):
        if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
            raise ArcFormatError(f"{where}, train pair {i}: needs 'input' and 'output'")
        train.append(
            (
                parse_grid(pair["input"], f"{where}, train pair {i} input"),
                parse_grid(pair["output"], f"{where}, train pair {i} output"),
            )
        )
    if solutions is not None and len(solutions) != len(raw["test"]):
        raise ArcFormatError(f"{where}: {len(solutions)} solutions for {len(raw['test'])} test inputs")
    test_inputs, test_outputs = [], []
    for i, pair in enumerate(raw["test"]):
        if not isinstance(pair, dict) or "input" not in pair:
            raise ArcFormatError(f"{where}, test pair {i}: needs 'input'")
        test_inputs.append(parse_grid(pair["input"], f"{where}, test pair {i} input"))
        output = solutions[i] if solutions is not None else pair.get("output")
        test_outputs.append(None if output is None else parse_grid(output, f"{where}, test pair {i} output"))
    if not train:
        raise ArcFormatError(f"{where}: no demonstration (train) pairs")
    if not test_inputs:
        raise ArcFormatError(f"{where}: no test pairs")
    return ArcTask(task_id=task_id, subset=subset, train=train, test_inputs=test_inputs, test_outputs=test_outputs)


def _load_json(path: Path) -> Any:
    if path.is_dir():
        raise ArcFormatError(f"{path}: is a folder, not a JSON file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ArcFormatError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ArcFormatError(f"{path}: cannot read it ({error})") from None
    if not text.strip():
        raise ArcFormatError(f"{path}: the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ArcFormatError(f"{path}: not valid JSON ({error})") from None


def combined_files(path: Path, prefix: str, subset: str) -> tuple[Path, Path]:
    """The challenges and solutions files of ``subset`` in the combined layout."""
    return path / f"{prefix}_{subset}_challenges.json", path / f"{prefix}_{subset}_solutions.json"


def per_task_folder(path: Path, subset: str) -> Path | None:
    """The folder of ``subset`` in the per-task layout (``<subset>/`` or ``data/<subset>/``)."""
    for folder in (path / subset, path / "data" / subset):
        if folder.is_dir():
            return folder
    return None


def read_combined(path: Path, prefix: str, subset: str) -> list[ArcTask]:
    """Tasks of ``subset`` from the combined challenges (+ optional solutions) files."""
    challenges_file, solutions_file = combined_files(Path(path), prefix, subset)
    challenges = _load_json(challenges_file)
    if not isinstance(challenges, dict):
        raise ArcFormatError(f"{challenges_file}: expected an object of task id -> task")
    solutions = _load_json(solutions_file) if solutions_file.exists() else None
    if solutions is not None and not isinstance(solutions, dict):
        raise ArcFormatError(f"{solutions_file}: expected an object of task id -> list of grids")
    tasks = []
    for task_id in sorted(challenges):
        task_solutions = None
        if solutions is not None:
            if task_id not in solutions:
                raise ArcFormatError(f"{solutions_file}: no solutions for task {task_id}")
            task_solutions = solutions[task_id]
            if not isinstance(task_solutions, list):
                raise ArcFormatError(f"{solutions_file}: task {task_id}: expected a list of grids")
        source = str(challenges_file) if task_solutions is None else f"{challenges_file} (+ solutions)"
        tasks.append(parse_task(task_id, subset, challenges[task_id], source, task_solutions))
    return tasks


def read_per_task(folder: Path, subset: str) -> list[ArcTask]:
    """Tasks from a folder of ``<task_id>.json`` files (test outputs inline)."""
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise ArcFormatError(f"{folder}: no <task_id>.json files")
    return [parse_task(file.stem, subset, _load_json(file), str(file)) for file in files]


def available_subsets(path: Path, prefix: str) -> list[str]:
    """The subsets found under ``path`` in either layout, sorted."""
    path = Path(path)
    found = set()
    if path.is_dir():
        ending = "_challenges.json"
        for file in path.glob(f"{prefix}_*{ending}"):
            found.add(file.name[len(prefix) + 1 : -len(ending)])
        for parent in (path, path / "data"):
            if parent.is_dir():
                found.update(
                    folder.name for folder in parent.iterdir() if folder.is_dir() and any(folder.glob("*.json"))
                )
    return sorted(found)


def detect_layout(path: Path, prefix: str, subset: str) -> Literal["combined", "per_task"]:
    """Which layout holds ``subset`` under ``path``; raises when neither does, naming
    the subsets that are there."""
    path = Path(path)
    if combined_files(path, prefix, subset)[0].exists():
        return "combined"
    if per_task_folder(path, subset) is not None:
        return "per_task"
    found = available_subsets(path, prefix)
    there = f"subsets found there: {', '.join(found)}" if found else "no subsets found there"
    raise ArcFormatError(
        f"{path}: subset {subset!r} not found ({there}); expected "
        f"{combined_files(path, prefix, subset)[0].name} (combined layout) or a folder "
        f"{subset}/ or data/{subset}/ of <task_id>.json files (per-task layout), "
        f"or name only subsets that are there"
    )


def read_subset(path: Path, subset: str, *, prefix: str = "arc-agi", layout: Layout = "auto") -> list[ArcTask]:
    """All tasks of ``subset`` under ``path``, sorted by task id."""
    path = Path(path)
    if layout == "auto":
        layout = detect_layout(path, prefix, subset)
    if layout == "combined":
        if not combined_files(path, prefix, subset)[0].exists():
            raise ArcFormatError(f"{combined_files(path, prefix, subset)[0]}: missing (combined layout)")
        return read_combined(path, prefix, subset)
    folder = per_task_folder(path, subset)
    if folder is None:
        raise ArcFormatError(f"{path}: no folder {subset}/ or data/{subset}/ (per-task layout)")
    return read_per_task(folder, subset)


def input_files(path: Path, subset: str, *, prefix: str = "arc-agi", layout: Layout = "auto") -> list[Path]:
    """The files a subset is read from (for cache keys)."""
    path = Path(path)
    if layout == "auto":
        layout = detect_layout(path, prefix, subset)
    if layout == "combined":
        return [f for f in combined_files(path, prefix, subset) if f.exists()]
    folder = per_task_folder(path, subset)
    return sorted(folder.glob("*.json")) if folder is not None else []


def task_to_json(task: ArcTask) -> dict[str, Any]:
    """The per-task-layout JSON of a task (test outputs inline when known)."""
    test = []
    for grid, output in zip(task.test_inputs, task.test_outputs):
        pair = {"input": grid.tolist()}
        if output is not None:
            pair["output"] = output.tolist()
        test.append(pair)
    return {"train": [{"input": i.tolist(), "output": o.tolist()} for i, o in task.train], "test": test}


def read_tasks_file(path: Path) -> dict[str, dict[str, Any]]:
    """Task id -> ``{"test": [pairs]}`` from any file or folder that lists ARC tasks.

    Accepts a per-task folder (``<task_id>.json`` files, test outputs inline: the
    ARC-AGI repositories' ``data/evaluation/``), a single ``<task_id>.json``, a
    folder holding one combined ``*_challenges.json``, a combined challenges file, or
    a built split's ``arc_test_tasks.json``. Used to check a submission's ids and counts.
    """
    path = Path(path)
    if path.is_dir():
        challenges = sorted(path.glob("*_challenges.json"))
        if len(challenges) > 1:
            names = ", ".join(file.name for file in challenges)
            raise ArcFormatError(
                f"{path}: holds several combined-layout files ({names}); pass the one to check against"
            )
        if challenges:
            return read_tasks_file(challenges[0])
        tasks = read_per_task(path, path.name)
        return {task.task_id: task_to_json(task) for task in tasks}
    raw = _load_json(path)
    if isinstance(raw, dict) and all(isinstance(raw.get(k), list) for k in ("train", "test")):
        # a single file of the per-task layout
        task = parse_task(path.stem, "", raw, str(path))
        return {task.task_id: task_to_json(task)}
    if not isinstance(raw, dict) or not raw:
        raise ArcFormatError(
            f"{path}: expected an object of task id -> task (a challenges "
            f"file) or one task with 'train' and 'test' lists"
        )
    for task_id, task in raw.items():
        if not isinstance(task, dict) or not isinstance(task.get("test"), list):
            raise ArcFormatError(f"{path}: task {task_id}: expected an object with a 'test' list")
    return raw
