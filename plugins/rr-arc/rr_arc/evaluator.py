"""The ``arc`` evaluator: de-augment, vote, pass@K, per-task results and a submission.

Every test example of the built ``test/`` split is one augmented version of one
test input. For each prediction the evaluator finds the grid on the canvas (from
the example's known offset, as far as the colour tokens reach, see
:func:`rr_arc.grids.crop`), maps its colours back and undoes its dihedral
transform, then votes: the distinct grids predicted for one test input are ranked
by vote count, ties by mean Q-halt confidence (``sigmoid(q_halt_logits)``), as the
HRM/TRM evaluators do (``ranking`` and ``q_transform`` change this).

Two scores are reported for each K of ``pass_k``:

``pass@K``
    per test output: a test output passes when its true grid is among the K
    best-ranked candidates; a task scores the fraction of its test outputs that
    pass; the mean over tasks is reported. This is the ARC Prize scoring (with
    K = 2) and TRM's evaluator.
``all_tests_pass@K``
    all-or-nothing per task: a task counts only when every one of its test
    outputs passes (HRM's evaluation notebook).

Files written to the output folder on rank 0: ``arc_results.json`` (metrics and,
per task and test output, the best candidates with votes, mean Q and
correctness) and ``submission.json`` in the ARC Prize format
``{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...one per test input]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch

from rr_arc.builder import AUGMENTATIONS_FILE, TEST_TASKS_FILE
from rr_arc.grids import COLOUR_OFFSET, MAX_GRID_SIZE, crop
from rr_arc.reader import ArcFormatError, grid_key, parse_grid
from rrcore.api import inverse_dihedral

DEAUGMENT_CHUNK = 32768  # predictions de-augmented at once


@attrs.define
class ArcEvaluatorConfig:
    """``[[evaluators]] plugin = "arc"``.

    ``pass_k``: the K of pass@K. ``ranking``: ``votes_then_q`` (the references),
    ``votes`` or ``q`` alone. ``q_transform``: average ``sigmoid`` (the references)
    or raw ``logit`` Q-halt values. ``attempts``: grids per test input in the
    submission. ``top_candidates``: candidates listed per test output in
    ``arc_results.json``. ``write_files``: write the results and submission files.
    """

    pass_k: list[int] = attrs.field(factory=lambda: [1, 2, 5, 10, 100, 1000])
    ranking: Literal["votes_then_q", "votes", "q"] = "votes_then_q"
    q_transform: Literal["sigmoid", "logit"] = "sigmoid"
    attempts: int = 2
    top_candidates: int = 10
    write_files: bool = True


@attrs.define
class Candidate:
    """One distinct de-augmented grid predicted for a test input."""

    grid: np.ndarray
    votes: int = 0
    q_sum: float = 0.0

    @property
    def mean_q(self) -> float:
        return self.q_sum / max(self.votes, 1)


def rank_candidates(candidates: dict[bytes, Candidate], ranking: str = "votes_then_q") -> list[tuple[bytes, Candidate]]:
    """Candidates best first; remaining ties broken by the grid's bytes so every run agrees."""
    if ranking == "votes_then_q":
        order = lambda item: (-item[1].votes, -item[1].mean_q, item[0])  # noqa: E731
    elif ranking == "votes":
        order = lambda item: (-item[1].votes, item[0])  # noqa: E731
    elif ranking == "q":
        order = lambda item: (-item[1].mean_q, item[0])  # noqa: E731
    else:
        raise ValueError(f"ranking must be votes_then_q, votes or q, got {ranking!r}")
    return sorted(candidates.items(), key=order)


def load_test_tasks(data_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The original test pairs and the augmentation map written by the builder."""
    data_dir = Path(data_dir)
    for name in (TEST_TASKS_FILE, AUGMENTATIONS_FILE):
        if not (data_dir / name).exists():
            raise FileNotFoundError(
                f"{data_dir / name}: missing; the arc evaluator needs a test split built "
                f'by rr-arc ([data] plugin = "arc")'
            )
    tasks = json.loads((data_dir / TEST_TASKS_FILE).read_text())
    with np.load(data_dir / AUGMENTATIONS_FILE) as archive:
        table = {name: archive[name] for name in archive.files}
    return tasks, table


def deaugment(preds: np.ndarray, index: np.ndarray, table: dict[str, np.ndarray]) -> list[np.ndarray | None]:
    """Original-frame grids of predictions ``preds`` (n, 900) of test examples ``index`` (n,).

    ``None`` where the prediction holds no grid (no colour token at its offset).
    """
    n = len(index)
    puzzles = table["example_puzzle"][index]
    moved, heights, widths = crop(
        preds.reshape(n, MAX_GRID_SIZE, MAX_GRID_SIZE).astype(np.uint8), table["example_offset"][index].astype(np.int64)
    )
    inverse = np.argsort(table["puzzle_colours"][puzzles], axis=1).astype(np.uint8)  # (n, 10): new -> original
    colours = np.where(moved >= COLOUR_OFFSET, moved - COLOUR_OFFSET, 0).reshape(n, -1)  # uint8: compact
    original = np.take_along_axis(inverse, colours, axis=1).reshape(n, MAX_GRID_SIZE, MAX_GRID_SIZE)
    transforms = table["puzzle_transform"][puzzles]
    grids: list[np.ndarray | None] = []
    for i in range(n):
        if heights[i] == 0:
            grids.append(None)
        else:
            grids.append(inverse_dihedral(original[i, : heights[i], : widths[i]], int(transforms[i])))
    return grids


def score(
    tasks: dict[str, Any],
    table: dict[str, np.ndarray],
    index: np.ndarray,
    puzzle_identifiers: np.ndarray,
    preds: np.ndarray,
    q_halt_logits: np.ndarray,
    config: ArcEvaluatorConfig,
) -> tuple[dict[str, float], dict[str, Any], dict[str, list]]:
    """Vote and score predictions of test examples; returns (metrics, per-task results, submission)."""
    if len(index) and not np.array_equal(table["example_puzzle"][index], puzzle_identifiers):
        raise ValueError(
            "evaluation batches do not match the split's arc_augmentations.npz (puzzle identifiers "
            "differ): evaluate the test split this builder wrote"
        )
    votes, empty = _vote(table, index, preds, q_halt_logits, config.q_transform)
    pass_k = sorted(set(config.pass_k))
    if not pass_k or pass_k[0] < 1:
        raise ValueError(f"pass_k must list positive integers, got {config.pass_k}")
    per_output = {k: [] for k in pass_k}  # per scored task: fraction of its test outputs passing
    all_outputs = {k: [] for k in pass_k}
    results, submission = {}, {}
    scored_outputs = unscored_outputs = 0
    for task_id, task in tasks.items():
        task_result, submission[task_id], hits = _score_task(task_id, task, votes, pass_k, config)
        scored_outputs += len(hits[pass_k[0]])
        unscored_outputs += len(task["test"]) - len(hits[pass_k[0]])
        entry: dict[str, Any] = {"subset": task.get("subset"), "tests": task_result}
        if hits[pass_k[0]]:  # the task has at least one known test output
            for k in pass_k:
                per_output[k].append(float(np.mean(hits[k])))
                all_outputs[k].append(float(all(hits[k])))
                entry[f"pass@{k}"] = per_output[k][-1]
        results[task_id] = entry

    num_scored = len(per_output[pass_k[0]])
    metrics: dict[str, float] = {}
    for k in pass_k:
        metrics[f"pass@{k}"] = float(np.mean(per_output[k])) if num_scored else 0.0
    for k in pass_k:
        metrics[f"all_tests_pass@{k}"] = float(np.mean(all_outputs[k])) if num_scored else 0.0
    metrics.update(
        num_tasks=float(num_scored),
        num_test_outputs=float(scored_outputs),
        num_unscored_test_outputs=float(unscored_outputs),
        num_predictions=float(len(index)),
        empty_predictions=float(empty),
    )
    return metrics, results, submission


def _vote(
    table: dict[str, np.ndarray], index: np.ndarray, preds: np.ndarray, q_halt_logits: np.ndarray, q_transform: str
) -> tuple[dict[tuple[str, int], dict[bytes, Candidate]], int]:
    """The candidates of every (task id, test index) with their votes and summed Q, and
    how many predictions held no grid."""
    task_ids = table["task_ids"]
    example_tasks = table["puzzle_task"][table["example_puzzle"][index]]
    test_indices = table["example_test_index"][index]
    q = q_halt_logits.astype(np.float64)
    if q_transform == "sigmoid":
        q = 1.0 / (1.0 + np.exp(-q))
    votes: dict[tuple[str, int], dict[bytes, Candidate]] = {}
    empty = 0
    for start in range(0, len(index), DEAUGMENT_CHUNK):  # chunks bound the temporary canvases' memory
        chunk = slice(start, start + DEAUGMENT_CHUNK)
        for grid, task, test_index, confidence in zip(
            deaugment(preds[chunk], index[chunk], table), example_tasks[chunk], test_indices[chunk], q[chunk]
        ):
            if grid is None:
                empty += 1
                continue
            candidates = votes.setdefault((str(task_ids[task]), int(test_index)), {})
            candidate = candidates.setdefault(grid_key(grid), Candidate(grid=grid))
            candidate.votes += 1
            candidate.q_sum += float(confidence)
    return votes, empty


def _score_task(
    task_id: str,
    task: dict[str, Any],
    votes: dict[tuple[str, int], dict[bytes, Candidate]],
    pass_k: list[int],
    config: ArcEvaluatorConfig,
) -> tuple[list[dict[str, Any]], list[dict[str, list]], dict[int, list[bool]]]:
    """One task's results per test output, its submission entries and, per K, whether each
    test output with a known answer passes."""
    task_result, attempts_list, hits = [], [], {k: [] for k in pass_k}
    for test_index, pair in enumerate(task["test"]):
        ranked = rank_candidates(votes.get((task_id, test_index), {}), config.ranking)
        truth = None if pair["output"] is None else grid_key(np.asarray(pair["output"], dtype=np.uint8))
        rank = next((r for r, (key, _) in enumerate(ranked) if key == truth), None)
        if truth is not None:
            for k in pass_k:
                hits[k].append(rank is not None and rank < k)
        task_result.append(
            {
                "correct_rank": None if rank is None else rank + 1,
                "num_candidates": len(ranked),
                "num_votes": sum(c.votes for _, c in ranked),
                "candidates": [
                    {"grid": c.grid.tolist(), "votes": c.votes, "mean_q": c.mean_q, "correct": key == truth}
                    for key, c in ranked[: config.top_candidates]
                ],
            }
        )
        grids = [c.grid.tolist() for _, c in ranked[: config.attempts]] or [[[0]]]
        grids += [grids[0]] * (config.attempts - len(grids))
        attempts_list.append({f"attempt_{i + 1}": g for i, g in enumerate(grids)})
    return task_result, attempts_list, hits


def validate_submission(submission: Any, tasks: dict[str, Any] | None = None, attempts: int = 2) -> None:
    """Raise :class:`ArcFormatError` unless ``submission`` follows the ARC Prize format.

    ``{task_id: [{"attempt_1": grid, ..., "attempt_<attempts>": grid}, ...]}`` with
    one entry per test input and grids of integers 0-9, at most 30x30. With
    ``tasks`` (task id -> ``{"test": [...]}``) the task ids and the number of
    entries per task must match too.
    """
    if not isinstance(submission, dict):
        raise ArcFormatError(f"submission: expected an object of task id -> list, got {type(submission).__name__}")
    if tasks is not None and set(submission) != set(tasks):
        missing, extra = sorted(set(tasks) - set(submission)), sorted(set(submission) - set(tasks))
        raise ArcFormatError(f"submission: task ids differ (missing {missing[:5]}, unexpected {extra[:5]})")
    keys = {f"attempt_{i + 1}" for i in range(attempts)}
    for task_id, entries in submission.items():
        if not isinstance(entries, list) or not entries:
            raise ArcFormatError(f"submission: task {task_id}: expected a non-empty list, one entry per test input")
        if tasks is not None and len(entries) != len(tasks[task_id]["test"]):
            raise ArcFormatError(
                f"submission: task {task_id}: {len(entries)} entries for {len(tasks[task_id]['test'])} test inputs"
            )
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or set(entry) != keys:
                got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
                raise ArcFormatError(f"submission: task {task_id}, test {i}: expected keys {sorted(keys)}, got {got}")
            for key in sorted(keys):
                parse_grid(entry[key], f"submission: task {task_id}, test {i}, {key}")


class ArcEvaluator:
    """Scores an ARC test split built by rr-arc (see the module docstring)."""

    required_outputs: set[str] = {"q_halt_logits"}
    headline_metrics = ("pass@1", "pass@2")

    def __init__(self, config: ArcEvaluatorConfig, context: Any) -> None:
        self.config = config
        self.context = context
        self.tasks, self.table = load_test_tasks(context.data_dir)
        self._chunks: list[tuple[torch.Tensor, ...]] = []

    def begin_eval(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self._chunks = []

    def update_batch(self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
        # Kept on the device as compact copies (a trainer may reuse its buffers); moved to the
        # host once, in result().
        self._chunks.append(
            (
                batch["valid"].clone(),
                batch["index"].clone(),
                batch["puzzle_identifiers"].clone(),
                outputs["preds"].to(torch.uint8),
                outputs["q_halt_logits"].to(torch.float32, copy=True),
            )
        )

    def _local_arrays(self) -> dict[str, np.ndarray]:
        if not self._chunks:
            return {
                "index": np.zeros(0, np.int64),
                "puzzle": np.zeros(0, np.int32),
                "preds": np.zeros((0, MAX_GRID_SIZE * MAX_GRID_SIZE), np.uint8),
                "q": np.zeros(0, np.float32),
            }
        valid, index, puzzle, preds, q = (torch.cat(parts) for parts in zip(*self._chunks))
        return {
            "index": index[valid].cpu().numpy().astype(np.int64),
            "puzzle": puzzle[valid].cpu().numpy().astype(np.int32),
            "preds": preds[valid].cpu().numpy(),
            "q": q[valid].cpu().numpy(),
        }

    def result(self) -> dict[str, float] | None:
        from rrcore.api import gather_to_rank0

        gathered = gather_to_rank0(self._local_arrays())
        self._chunks = []
        if gathered is None or self.context.rank != 0:
            return None
        merged = {name: np.concatenate([part[name] for part in gathered]) for name in gathered[0]}
        metrics, results, submission = score(
            self.tasks, self.table, merged["index"], merged["puzzle"], merged["preds"], merged["q"], self.config
        )
        if self.config.write_files:
            output = self.output_dir
            output.mkdir(parents=True, exist_ok=True)
            (output / "arc_results.json").write_text(json.dumps({"metrics": metrics, "tasks": results}))
            (output / "submission.json").write_text(json.dumps(submission))
        return metrics
