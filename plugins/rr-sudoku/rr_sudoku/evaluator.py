"""The ``sudoku`` evaluator: accuracy, exact solutions and valid solutions, by difficulty.

Metrics (each over the evaluated examples, pooled over ranks):

``blank_accuracy``
    correct cells among the cells blank in the puzzle (the cells to solve),
    pooled over all puzzles' blank cells.
``cell_accuracy``
    correct cells among all cells (givens included, as the references' token accuracy).
``exact_accuracy``
    puzzles whose every cell equals the label.
``valid_solution``
    puzzles whose predicted grid satisfies every row, column and box and keeps
    the givens, checked against the puzzle alone (a valid solution that differs
    from the label counts, which matters only for puzzles that are not unique).

When the split has ``all__ratings.npy`` (written by the builder), each metric is
repeated per difficulty bucket as ``<metric>/rating_<low>-<high>``.

Files written to the output folder on rank 0 (after gathering every rank's rows):
``predictions.jsonl``, one row per evaluated puzzle in index order with ``index``,
``input``, ``prediction`` and ``label`` as puzzle strings (``.`` for a blank, or for a
predicted token that is no digit), ``correct`` (every cell right) and ``rating`` when
known; and ``results.json``, the metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from rr_sudoku.builder import RATINGS_FILE
from rr_sudoku.grid import BLANK_TOKEN, DIGIT_OFFSET, geometry, size_of_length
from rrcore.api import IGNORE_LABEL, EvalContext, all_reduce_sum, gather_to_rank0

_SUMS = ("count", "blank_correct", "blank_cells", "cell_correct", "cells", "exact", "valid")


@attrs.define
class SudokuEvalConfig:
    """``[[evaluators]] plugin = "sudoku"``.

    ``rating_buckets``: ascending lower edges of the difficulty buckets (the
    ratings in ``all__ratings.npy``: solver guesses, or the CSV rating).
    ``write_predictions``: write ``predictions.jsonl`` and ``results.json`` (module doc).
    """

    rating_buckets: list[int] = attrs.field(factory=lambda: [0, 1, 10, 100, 1000])
    write_predictions: bool = True


class SudokuEvaluator:
    """Scores predicted grids; see the module doc for the metrics."""

    required_outputs: set[str] = set()
    headline_metrics = ("exact_accuracy", "blank_accuracy", "valid_solution")

    def __init__(self, config: SudokuEvalConfig, context: EvalContext) -> None:
        self.config = config
        self.context = context
        self.size = size_of_length(context.metadata.seq_len)
        device = context.device
        self._units = torch.tensor(geometry(self.size).units, dtype=torch.long, device=device)
        edges = sorted(config.rating_buckets)
        if not edges or edges != list(config.rating_buckets):
            raise ValueError(f"rating_buckets must be a non-empty ascending list, got {config.rating_buckets}")
        self._edges = torch.tensor(edges, dtype=torch.int64, device=device)
        path = context.data_dir / RATINGS_FILE
        self._ratings = torch.from_numpy(np.load(path).astype(np.int64)).to(device) if path.exists() else None

    def begin_eval(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        buckets = len(self._edges) if self._ratings is not None else 0
        self._sums = torch.zeros(1 + buckets, len(_SUMS), dtype=torch.float64, device=self.context.device)
        self._rows: list[tuple[torch.Tensor, ...]] = []

    def row_stats(self, inputs: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """(B, 7) per-row sums in the order of ``_SUMS`` (count 1 per row)."""
        labelled = labels != IGNORE_LABEL
        correct = (preds == labels) & labelled
        blank = (inputs == BLANK_TOKEN) & labelled
        given = inputs > BLANK_TOKEN
        # Valid solution: every cell a digit, every unit holds each digit once, givens kept.
        digit = preds.long() - DIGIT_OFFSET  # 1..size where a digit
        is_digit = (digit >= 1) & (digit <= self.size)
        one_hot = F.one_hot((digit - 1).clamp(0, self.size - 1), self.size) * is_digit[..., None]
        per_unit = one_hot[:, self._units].sum(dim=2)  # (B, units, size)
        satisfied = (per_unit == 1).all(dim=-1).all(dim=-1)
        keeps_givens = (~given | (preds == inputs)).all(dim=-1)
        return torch.stack(
            [
                torch.ones_like(satisfied, dtype=torch.float64),
                (correct & blank).sum(-1).double(),
                blank.sum(-1).double(),
                correct.sum(-1).double(),
                labelled.sum(-1).double(),
                (correct | ~labelled).all(-1).double(),
                (satisfied & keeps_givens).double(),
            ],
            dim=-1,
        )

    def update_batch(self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
        stats = self.row_stats(batch["inputs"], batch["labels"], outputs["preds"])
        stats = stats * batch["valid"][:, None]
        if self.config.write_predictions:
            # Compact copies stay on the device (the trainer may reuse its buffers); they
            # reach the host once, in result().
            self._rows.append(
                (
                    batch["valid"].clone(),
                    batch["index"].clone(),
                    batch["inputs"].to(torch.uint8),
                    batch["labels"].to(torch.uint8),
                    outputs["preds"].to(torch.uint8),
                )
            )
        self._sums[0] += stats.sum(0)
        if self._ratings is not None:
            index = batch["index"].clamp(0, len(self._ratings) - 1)
            bucket = torch.searchsorted(self._edges, self._ratings[index], right=True) - 1
            self._sums[1:].index_add_(0, bucket.clamp_min(0), stats)

    @staticmethod
    def _metrics(sums: list[float]) -> dict[str, float]:
        values = dict(zip(_SUMS, sums, strict=True))
        count = max(values["count"], 1.0)
        return {
            "blank_accuracy": values["blank_correct"] / max(values["blank_cells"], 1.0),
            "cell_accuracy": values["cell_correct"] / max(values["cells"], 1.0),
            "exact_accuracy": values["exact"] / count,
            "valid_solution": values["valid"] / count,
            "count": values["count"],
        }

    def _local_rows(self) -> dict[str, np.ndarray]:
        """This rank's valid rows as host arrays: one copy from the device per array."""
        if not self._rows:
            empty = np.zeros((0, self.size * self.size), np.uint8)
            return {"index": np.zeros(0, np.int64), "inputs": empty, "labels": empty, "preds": empty}
        valid, index, inputs, labels, preds = (torch.cat(parts) for parts in zip(*self._rows))
        return {
            "index": index[valid].cpu().numpy().astype(np.int64),
            "inputs": inputs[valid].cpu().numpy(),
            "labels": labels[valid].cpu().numpy(),
            "preds": preds[valid].cpu().numpy(),
        }

    def result(self) -> dict[str, float] | None:
        sums = all_reduce_sum(self._sums).tolist()
        gathered = gather_to_rank0(self._local_rows()) if self.config.write_predictions else None
        self._rows = []
        if self.context.rank != 0:
            return None
        results = self._metrics(sums[0])
        edges = self._edges.tolist()
        for index, bucket in enumerate(sums[1:]):
            if bucket[0] == 0:
                continue
            name = (
                f"rating_{edges[index]}-{edges[index + 1] - 1}" if index + 1 < len(edges) else f"rating_{edges[index]}+"
            )
            results.update({f"{key}/{name}": value for key, value in self._metrics(bucket).items()})
        if gathered is not None:
            self._write(self.output_dir, gathered, results)
        return results

    def _write(self, output: Path, gathered: list[dict[str, np.ndarray]], results: dict[str, float]) -> None:
        """``predictions.jsonl`` (one row per puzzle, index order) and ``results.json``."""
        rows = {name: np.concatenate([part[name] for part in gathered]) for name in gathered[0]}
        order = np.argsort(rows["index"], kind="stable")
        index, inputs, labels, preds = (rows[name][order] for name in ("index", "inputs", "labels", "preds"))
        correct = ((preds == labels) | (labels == IGNORE_LABEL)).all(axis=1)
        ratings = self._ratings.cpu().numpy()[index] if self._ratings is not None else None
        output.mkdir(parents=True, exist_ok=True)
        with open(output / "predictions.jsonl", "w", encoding="utf-8") as handle:
            for row in range(len(index)):
                record = {
                    "index": int(index[row]),
                    "input": _puzzle_string(inputs[row]),
                    "prediction": _puzzle_string(preds[row]),
                    "label": _puzzle_string(labels[row]),
                    "correct": bool(correct[row]),
                }
                if ratings is not None:
                    record["rating"] = int(ratings[row])
                handle.write(json.dumps(record) + "\n")
        (output / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


_DIGIT_CHARACTERS = np.frombuffer(b"123456789", dtype=np.uint8)


def _puzzle_string(tokens: np.ndarray) -> str:
    """Tokens of one grid as a puzzle line: digits, ``.`` for a blank, pad or any non-digit."""
    digits = tokens.astype(np.int64) - DIGIT_OFFSET
    is_digit = (digits >= 1) & (digits <= len(_DIGIT_CHARACTERS))
    characters = np.where(is_digit, _DIGIT_CHARACTERS[np.clip(digits - 1, 0, 8)], ord("."))
    return characters.astype(np.uint8).tobytes().decode("ascii")
