"""The ``maze`` evaluator: exact accuracy and valid optimal paths.

``exact_accuracy`` compares whole predicted grids with the labels. ``optimal_path``
ignores the label: a prediction counts when its ``o`` cells, together with the
input's ``S`` and ``G``, form a start-to-goal path through open cells as short as
the shortest one (found by breadth-first search of the input maze). Other maze
shortest paths count as much as the label's; tokens off the path (walls, open
cells) are not judged by this metric.

The check needs no search over the prediction: call ``N`` the path cells plus
``S`` and ``G``. If ``S`` and ``G`` each have one neighbour in ``N`` and every path
cell two, the part of ``N`` holding ``S`` is a simple path that must end at ``G``;
it has at least ``d - 1`` path cells when ``d`` is the shortest length, so exactly
``d - 1`` path cells in all means ``N`` is that path and it is a shortest one.
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from rr_maze.maze import GOAL, OPEN, PATH, START, shortest_path_lengths
from rrcore.api import IGNORE_LABEL, EvalContext, all_reduce_sum, load_set


@attrs.define
class MazeEvalConfig:
    """``[[evaluators]] plugin = "maze"`` has no options."""


def grid_shape(metadata) -> tuple[int, int]:
    """(H, W) of a maze split: from rr's metadata, else a square (reference builds)."""
    extra = metadata.extra
    if "grid_height" in extra and "grid_width" in extra:
        return int(extra["grid_height"]), int(extra["grid_width"])
    side = math.isqrt(metadata.seq_len)
    if side * side != metadata.seq_len:
        raise ValueError(f"seq_len {metadata.seq_len} is not square and dataset.json has no grid_height/grid_width")
    return side, side


def _neighbour_count(mask: torch.Tensor) -> torch.Tensor:
    """Number of up/down/left/right neighbours in ``mask`` (B, H, W) of every cell."""
    padded = F.pad(mask.to(torch.int32), (1, 1, 1, 1))
    return padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]


def valid_optimal_paths(inputs: torch.Tensor, preds: torch.Tensor, shortest: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the predicted path of each maze is a valid shortest start-to-goal path.

    ``inputs`` and ``preds`` (B, H, W) tokens, ``shortest`` (B,) the shortest path
    lengths of the inputs (moves; negative when the maze has none).
    """
    path = preds == PATH
    ends = (inputs == START) | (inputs == GOAL)
    nodes = path | ends
    degree = _neighbour_count(nodes)
    flat = lambda t: t.flatten(1)  # noqa: E731
    path_on_open = ~flat(path & (inputs != OPEN)).any(1)
    ends_ok = (
        flat(torch.where(ends, degree == 1, True)).all(1)
        & (flat(inputs == START).sum(1) == 1)
        & (flat(inputs == GOAL).sum(1) == 1)
    )
    path_ok = flat(torch.where(path, degree == 2, True)).all(1)
    right_length = flat(path).sum(1) == shortest - 1
    return path_on_open & ends_ok & path_ok & right_length & (shortest > 0)


class MazeEvaluator:
    """Exact accuracy and valid-optimal-path rate of predicted maze solutions."""

    required_outputs: set[str] = set()
    headline_metrics = ("exact_accuracy", "optimal_path")

    def __init__(self, config: MazeEvalConfig, context: EvalContext) -> None:
        self.context = context
        self.shape = grid_shape(context.metadata)
        self._shortest = torch.from_numpy(self._shortest_lengths(Path(context.data_dir))).to(context.device)

    def _shortest_lengths(self, data_dir: Path) -> np.ndarray:
        """Shortest path length of every row of the split, by BFS of its input maze."""
        lengths = []
        for name in self.context.metadata.sets:
            inputs = np.asarray(load_set(data_dir, name).inputs)
            for begin in range(0, len(inputs), 1024):  # bounded memory on large splits
                lengths.append(shortest_path_lengths(inputs[begin : begin + 1024].reshape(-1, *self.shape)))
        return np.concatenate(lengths).astype(np.int64) if lengths else np.zeros(0, np.int64)

    def begin_eval(self, output_dir: Path) -> None:
        self._sums = torch.zeros(3, dtype=torch.float64, device=self.context.device)  # count, exact, optimal

    def update_batch(self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
        valid = batch["valid"]
        inputs = batch["inputs"].view(-1, *self.shape)
        preds = outputs["preds"].view(-1, *self.shape)
        shortest = self._shortest[batch["index"].clamp(0, len(self._shortest) - 1)]
        optimal = valid_optimal_paths(inputs, preds, shortest)
        labels = batch["labels"]
        exact = ((outputs["preds"] == labels) | (labels == IGNORE_LABEL)).all(-1)
        self._sums += torch.stack([valid.sum(), (valid & exact).sum(), (valid & optimal).sum()]).to(torch.float64)

    def result(self) -> dict[str, float] | None:
        count, exact, optimal = all_reduce_sum(self._sums).tolist()
        if self.context.rank != 0:
            return None
        return {"exact_accuracy": exact / max(count, 1.0), "optimal_path": optimal / max(count, 1.0), "count": count}
