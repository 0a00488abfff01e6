"""The ``rubik`` evaluator: does the predicted move sequence solve the cube, optimally?

The predicted answer slots are read as moves up to the first token that is not a
move (``END``, ``PAD`` or anything else); those moves are applied to the input
state through the move tables, on the device, for the whole batch at once. A
prediction *solves* when the result is the solved cube and is *optimal* when it
also has as many moves as the state's distance. Neither compares with the label,
so every optimal solution counts, not only the one the builder wrote.
"""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import numpy as np
import torch

from rr_rubik import cube
from rr_rubik.tokens import ANSWER_LEN, CORNER_BASE, MOVE_BASE, STATE_LEN
from rrcore.api import IGNORE_LABEL, EvalContext, all_reduce_sum, default_cache_dir


@attrs.define
class RubikEvalConfig:
    """``[[evaluators]] plugin = "rubik"``; ``cache_dir`` ("" = rr's default cache) is
    where the distance table is found when the split has no ``all__distances.npy``."""

    cache_dir: str = ""


def _lehmer_rank(perm: torch.Tensor) -> torch.Tensor:
    """Lehmer rank of each row of ``perm`` (B, 7), as :func:`rr_rubik.cube.perm_rank`."""
    n = perm.shape[-1]
    later = torch.triu(torch.ones(n, n, dtype=torch.bool, device=perm.device), 1)
    smaller_after = ((perm[:, None, :] < perm[:, :, None]) & later).sum(-1)
    factorials = torch.tensor([math.factorial(n - 1 - i) for i in range(n)], device=perm.device)
    return (smaller_after * factorials).sum(-1)


class RubikEvaluator:
    """Solve rate, optimal rate and exact (label-equal) accuracy of predicted solutions."""

    required_outputs: set[str] = set()
    headline_metrics = ("solve_rate", "optimal_rate")

    def __init__(self, config: RubikEvalConfig, context: EvalContext) -> None:
        self.config = config
        self.context = context
        device = context.device
        perm_table, ori_table = cube.move_tables()
        self._perm_table = torch.from_numpy(perm_table).to(device)
        self._ori_table = torch.from_numpy(ori_table).to(device)
        self._ori_weights = torch.from_numpy(cube._ORI_WEIGHTS).to(device)
        self._distances = torch.from_numpy(self._load_distances(Path(context.data_dir))).to(device)

    def _load_distances(self, data_dir: Path) -> np.ndarray:
        """Optimal length of every row of the split: the builder's file, else from the table."""
        sets = self.context.metadata.sets
        files = [data_dir / f"{name}__distances.npy" for name in sets]
        if all(path.exists() for path in files):
            return np.concatenate([np.load(path) for path in files]).astype(np.int64)
        from rr_rubik.tokens import decode_states
        from rrcore.api import load_set

        table = cube.distance_table(
            Path(self.config.cache_dir).expanduser() if self.config.cache_dir else default_cache_dir()
        )
        states = np.concatenate([decode_states(load_set(data_dir, name).inputs[:, :STATE_LEN]) for name in sets])
        return table[states].astype(np.int64)

    def begin_eval(self, output_dir: Path) -> None:
        # count, solved, optimal, exact, sum of predicted lengths of solving rows
        self._sums = torch.zeros(5, dtype=torch.float64, device=self.context.device)

    def simulate(self, inputs: torch.Tensor, preds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(solved (B,) bool, length (B,) int)`` of the predicted answers applied to the inputs."""
        corners = inputs[:, :STATE_LEN].long() - CORNER_BASE
        perm_coord = _lehmer_rank(corners // 3)
        ori_coord = ((corners % 3)[:, : STATE_LEN - 1] * self._ori_weights).sum(-1)
        moves = preds[:, STATE_LEN : STATE_LEN + ANSWER_LEN].long() - MOVE_BASE
        is_move = (moves >= 0) & (moves < cube.NUM_MOVES)
        active = torch.cumprod(is_move.long(), dim=1).bool()  # moves before the first non-move
        moves = moves.clamp(0, cube.NUM_MOVES - 1)
        for slot in range(ANSWER_LEN):
            move = moves[:, slot]
            perm_coord = torch.where(active[:, slot], self._perm_table[perm_coord, move], perm_coord)
            ori_coord = torch.where(active[:, slot], self._ori_table[ori_coord, move], ori_coord)
        solved = (perm_coord == 0) & (ori_coord == 0)
        return solved, active.sum(-1)

    def update_batch(self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
        valid = batch["valid"]
        solved, length = self.simulate(batch["inputs"], outputs["preds"])
        optimal = solved & (length == self._distances[batch["index"].clamp_max(len(self._distances) - 1)])
        labels = batch["labels"]
        exact = ((outputs["preds"] == labels) | (labels == IGNORE_LABEL)).all(-1)
        self._sums += torch.stack(
            [
                valid.sum(),
                (valid & solved).sum(),
                (valid & optimal).sum(),
                (valid & exact).sum(),
                torch.where(valid & solved, length, 0).sum(),
            ]
        ).to(torch.float64)

    def result(self) -> dict[str, float] | None:
        count, solved, optimal, exact, length = all_reduce_sum(self._sums).tolist()
        if self.context.rank != 0:
            return None
        return {
            "solve_rate": solved / max(count, 1.0),
            "optimal_rate": optimal / max(count, 1.0),
            "exact_accuracy": exact / max(count, 1.0),
            "mean_solution_length": length / max(solved, 1.0),
            "count": count,
        }
