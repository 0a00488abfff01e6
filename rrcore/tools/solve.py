"""``rr solve``: one puzzle through a trained model, halting when its Q-head says so.

The checkpoint's experiment names the data set; that data set's task plugin
(``rr_register_tasks``) reads the puzzle the user typed, shows the answer and checks
it by the task's own rules. The data set itself is not needed: the run folder keeps
a copy of its metadata (vocabulary, sequence length, puzzle identifiers). The model
runs :func:`rrcore.evaluation.pool.run_pool` on a pool of the puzzles given (one for ``rr
solve``), recording the prediction after every step (K copies of each with ``[eval]
trajectories``). :mod:`rrcore.research` offers the same :class:`Solver` to Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from rrcore.base.cli_input import InputError
from rrcore.contracts.config import load_experiment
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.experiment import Experiment
from rrcore.contracts.protocols import Check, Puzzle, PuzzleTask
from rrcore.contracts.registry import get_registry
from rrcore.data.format import IGNORE_LABEL
from rrcore.evaluation.pool import TrajectoryNoise, run_pool
from rrcore.evaluation.split import task_for
from rrcore.training.build import build_act, build_trained_model
from rrcore.training.weights import hold_source


@attrs.define
class Solution:
    """What the model made of one puzzle: ``inputs`` and ``prediction`` token rows,
    ``steps`` used of at most ``max_steps``, ``q_halt`` (logit) at the last step,
    ``trace`` (steps, L) the prediction after every step, the task's ``check`` and its
    ``note`` on how the puzzle was posed (:class:`~rrcore.contracts.protocols.Puzzle`). With
    several ``trajectories`` (noisy runs, ``[eval] trajectories``) these are the run with
    the highest Q-halt, and ``agreeing`` counts the runs (it included) that gave its answer.
    ``puzzle_text`` and ``answer_text`` are the puzzle and the answer as one line of the
    task's text, ``grid`` the answer drawn for people (the task's ``decode`` and ``render``)."""

    inputs: np.ndarray
    prediction: np.ndarray
    steps: int
    max_steps: int
    q_halt: float
    trace: np.ndarray
    check: Check
    note: str = ""
    trajectories: int = 1
    agreeing: int = 1
    puzzle_text: str = ""
    answer_text: str = ""
    grid: str = ""

    @property
    def confidence(self) -> float:
        """sigmoid(q_halt): the Q-head's belief that the answer is right."""
        return float(torch.sigmoid(torch.tensor(self.q_halt)))

    def as_dict(self) -> dict[str, Any]:
        """What ``rr solve --json`` prints: the puzzle and answer as the task writes them
        (``puzzle_text``, ``answer_text``, ``grid``), steps, Q-halt, confidence and check."""
        record = {
            "puzzle": self.puzzle_text,
            "solution": self.answer_text,
            "grid": self.grid,
            "steps": self.steps,
            "max_steps": self.max_steps,
            "q_halt": round(self.q_halt, 4),
            "confidence": round(self.confidence, 4),
            "check": {"ok": self.check.ok, "message": self.check.message},
        }
        if self.trajectories > 1:
            record["trajectories"] = self.trajectories
            record["agreeing"] = self.agreeing
        if self.note:
            record["note"] = self.note
        return record


class Solver:
    """A checkpoint or export folder loaded for solving puzzles (EMA weights when the run
    kept them; an export holds only those).

    ``overrides`` are ``--set`` strings applied to its experiment; ``device`` (None: the
    experiment's ``run.device``) is where the model runs. The model's vocabulary
    and sequence length come from the copy of the data set's metadata in the run (or
    export) folder (:data:`rrcore.data.format.RUN_METADATA_FILE`, written when training starts);
    runs made before that file existed build (or find in the cache) their data set
    instead. ``metadata_source`` says which.
    """

    def __init__(
        self, reference: str | Path, overrides: Sequence[str] = (), device: torch.device | None = None
    ) -> None:
        with hold_source(reference) as checkpoint:  # a run saving meanwhile rotates others, not this one
            self.checkpoint = checkpoint
            self.experiment: Experiment = load_experiment(checkpoint / "config.toml", list(overrides))
            self.registry = get_registry()
            model, self.metadata, self.metadata_source, self.device = build_trained_model(
                checkpoint, self.experiment, self.registry, device
            )
            self.loss_head = build_act(self.experiment, self.registry, model, self.device)[1].eval()
        task = task_for(self.registry, self.experiment.data, self.metadata)
        if task is None:
            raise ConfigError(
                f"data set plugin {self.experiment.data.plugin!r} registers no task "
                f"(rr_register_tasks), so rr cannot read its puzzles"
            )
        self.task: PuzzleTask = task

    def solve(self, text: str, *, max_steps: int = 0, adaptive: bool = True) -> Solution:
        """Parse ``text`` with the task, run the model and check its answer (``rr solve``).

        ``max_steps``: the step cap (0: the experiment's ``[eval]`` cap);
        :class:`~rrcore.contracts.protocols.PuzzleError` when the task cannot read the puzzle. With
        ``[eval] trajectories`` K > 1 the puzzle runs K times, all but the first with the
        ``[eval]`` trajectory noise, and the answer is the run with the highest Q-halt.
        """
        return self.solve_many([self.read(text)], max_steps=max_steps, adaptive=adaptive)[0]

    def read(self, puzzle: str | Puzzle | Any) -> Puzzle:
        """``puzzle`` as the model reads it: text goes through the task's ``parse``, a
        :class:`~rrcore.contracts.protocols.Puzzle` stays, anything else is taken as input tokens;
        :class:`~rrcore.contracts.errors.ConfigError` when their number is not the model's."""
        source = f"task plugin {self.experiment.data.plugin!r} parsed" if isinstance(puzzle, str) else "the puzzle has"
        if isinstance(puzzle, str):
            puzzle = self.task.parse(puzzle)
        if not isinstance(puzzle, Puzzle):
            puzzle = Puzzle(puzzle)
        inputs = np.asarray(puzzle.inputs)
        if inputs.shape != (self.metadata.seq_len,):
            got = f"{inputs.shape[-1]} tokens" if inputs.ndim == 1 else f"tokens of shape {inputs.shape}"
            raise ConfigError(f"{source} {got}; the model reads one row of {self.metadata.seq_len}")
        return attrs.evolve(puzzle, inputs=inputs)

    def solve_many(
        self, puzzles: Sequence[Puzzle], *, max_steps: int = 0, adaptive: bool = True, batch_size: int = 256
    ) -> list[Solution]:
        """:meth:`solve` for puzzles already :meth:`read`, run together in ``batch_size``
        slots. Each is solved as it would be alone (a slot's rows never mix), except that
        with trajectories the noise is drawn for the whole batch, so noisy runs differ."""
        settings = self.experiment.eval
        runs = settings.trajectories
        cap = max_steps or settings.step_cap(self.experiment.act.halt_max_steps)
        tokens = np.stack([puzzle.inputs for puzzle in puzzles]).astype(np.int64)
        inputs = torch.as_tensor(tokens, device=self.device).to(torch.int32).repeat_interleave(runs, 0)
        pool = {
            "inputs": inputs,
            "labels": torch.full_like(inputs, IGNORE_LABEL, dtype=torch.long),
            "puzzle_identifiers": torch.full(
                (len(inputs),), self.metadata.blank_identifier_id, dtype=torch.int32, device=self.device
            ),
        }
        head = self.loss_head
        result = run_pool(
            head,
            head,
            pool,
            batch_size=min(batch_size, len(inputs)),
            max_steps=cap,
            adaptive=adaptive,
            q_continue=self.experiment.act.q_continue,
            sync_every=settings.sync_every,
            trace=True,
            noise=TrajectoryNoise.from_settings(head, settings),
        )
        # On the host once, not a device read per puzzle and field below.
        result = attrs.evolve(
            result,
            preds=result.preds.cpu(),
            q_halt=result.q_halt.cpu(),
            steps=result.steps.cpu(),
            trace=result.trace.cpu(),
        )
        return [self._solution(puzzle, result, number * runs, runs, cap) for number, puzzle in enumerate(puzzles)]

    def _solution(self, puzzle: Puzzle, result: Any, first: int, runs: int, cap: int) -> Solution:
        """The :class:`Solution` of the puzzle whose runs are rows ``first`` .. ``first + runs``."""
        q_halt, preds = result.q_halt[first : first + runs], result.preds[first : first + runs]
        best = int(q_halt.argmax())  # the first run on a tie: the noiseless one
        row = first + best
        steps = int(result.steps[row])
        prediction = result.preds[row].numpy()
        if puzzle.answer is None:
            check = self.task.check(puzzle.inputs, prediction)
        else:
            check = self.task.check(puzzle.inputs, prediction, answer=puzzle.answer)
        return Solution(
            puzzle.inputs,
            prediction,
            steps,
            cap,
            float(result.q_halt[row]),
            result.trace[row, :steps].numpy(),
            check,
            puzzle.note,
            runs,
            agreeing=int((preds == preds[best]).all(-1).sum()),
            puzzle_text=self.task.decode(puzzle.inputs),
            answer_text=self.task.decode(prediction),
            grid=self.task.render(prediction),
        )


def read_puzzle(argument: str, stdin: Any) -> str:
    """The puzzle text of ``rr solve``'s argument: ``-`` reads stdin, an existing file
    is read, anything else is the puzzle itself. A file or stdin that is not UTF-8 text is
    an :class:`~rrcore.base.cli_input.InputError` naming it."""
    where = "stdin" if argument == "-" else argument
    try:
        if argument == "-":
            return stdin.read()
        path = Path(argument)
        try:
            is_file = len(argument) < 4096 and path.is_file()
        except OSError:
            is_file = False
        return path.read_text(encoding="utf-8-sig") if is_file else argument
    except UnicodeDecodeError as error:
        raise InputError(f"{where}: not a puzzle in text (byte {error.start} is not UTF-8)") from None
    except OSError as error:
        raise InputError(f"{where}: cannot read the puzzle ({error.strerror})") from None
