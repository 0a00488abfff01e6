"""``rr solve``: one puzzle through a trained model, halting when its Q-head says so.

The checkpoint's experiment names the data set; that data set's task plugin
(``rr_register_tasks``) reads the puzzle the user typed, shows the answer and checks
it by the task's own rules. The model runs :func:`rrcore.inference.run_pool` on a
pool of one puzzle with one slot, recording the prediction after every step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from rrcore.checkpoint import resolve_checkpoint
from rrcore.config import ConfigError, Experiment, load_experiment
from rrcore.inference import run_pool, task_for
from rrcore.nn import IGNORE_LABEL
from rrcore.protocols import Check, PuzzleTask


@attrs.define
class Solution:
    """What the model made of one puzzle: ``inputs`` and ``prediction`` token rows,
    ``steps`` used of at most ``max_steps``, ``q_halt`` (logit) at the last step,
    ``trace`` (steps, L) the prediction after every step, and the task's ``check``."""

    inputs: np.ndarray
    prediction: np.ndarray
    steps: int
    max_steps: int
    q_halt: float
    trace: np.ndarray
    check: Check

    @property
    def confidence(self) -> float:
        """sigmoid(q_halt): the Q-head's belief that the answer is right."""
        return float(torch.sigmoid(torch.tensor(self.q_halt)))


class Solver:
    """A checkpoint loaded for solving single puzzles (EMA weights when the run kept them).

    ``overrides`` are ``--set`` strings applied to the checkpoint's experiment. Loading
    builds (or finds in the cache) the experiment's data set: the model's vocabulary
    and sequence length come from it.
    """

    def __init__(self, reference: str | Path, overrides: list[str] = ()) -> None:
        from rrcore.run import build_run

        self.checkpoint = resolve_checkpoint(reference)
        self.experiment: Experiment = load_experiment(self.checkpoint / "config.toml", list(overrides))
        self.run = build_run(self.experiment, optimizers=False, evaluators=False)
        self.run.restore(self.checkpoint)
        task = task_for(self.run.registry, self.experiment.data, self.run.metadata)
        if task is None:
            raise ConfigError(f"data set plugin {self.experiment.data.plugin!r} registers no task "
                              f"(rr_register_tasks), so rr cannot read its puzzles")
        self.task: PuzzleTask = task

    @property
    def metadata(self) -> Any:
        return self.run.metadata

    def solve(self, text: str, *, max_steps: int = 0, adaptive: bool = True) -> Solution:
        """Parse ``text`` with the task, run the model and check its answer.

        ``max_steps``: the step cap (0: the experiment's ``[eval]`` cap);
        :class:`~rrcore.protocols.PuzzleError` when the task cannot read the puzzle.
        """
        inputs = np.asarray(self.task.parse(text))
        metadata = self.metadata
        if inputs.shape != (metadata.seq_len,):
            raise ConfigError(f"task plugin {self.experiment.data.plugin!r} parsed {inputs.shape[-1]} tokens; "
                              f"the model reads {metadata.seq_len}")
        device = self.run.device
        tokens = torch.as_tensor(inputs.astype(np.int64), device=device)[None].to(torch.int32)
        pool = {"inputs": tokens, "labels": torch.full_like(tokens, IGNORE_LABEL, dtype=torch.long),
                "puzzle_identifiers": torch.full((1,), metadata.blank_identifier_id, dtype=torch.int32,
                                                 device=device)}
        cap = max_steps or self.experiment.eval.step_cap(self.experiment.act.halt_max_steps)
        head = self.run.loss_head
        with self.run.evaluation_weights():
            result = run_pool(head, head.eval(), pool, batch_size=1, max_steps=cap, adaptive=adaptive,
                              q_continue=self.experiment.act.q_continue, sync_every=1, trace=True)
        steps = int(result.steps[0])
        prediction = result.preds[0].cpu().numpy()
        return Solution(inputs, prediction, steps, cap, float(result.q_halt[0]),
                        result.trace[0, :steps].cpu().numpy(), self.task.check(inputs, prediction))


def read_puzzle(argument: str, stdin: Any) -> str:
    """The puzzle text of ``rr solve``'s argument: ``-`` reads stdin, an existing file
    is read, anything else is the puzzle itself."""
    if argument == "-":
        return stdin.read()
    path = Path(argument)
    try:
        is_file = len(argument) < 4096 and path.is_file()
    except OSError:
        is_file = False
    return path.read_text(encoding="utf-8-sig") if is_file else argument
