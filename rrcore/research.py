"""rr from Python, for research: train an experiment, evaluate a checkpoint, solve puzzles.

    from rrcore.research import Solver, evaluate, export, train

    result = train("examples/sudoku4x4-trm.toml", ["train.max_steps=50"])
    solver = Solver.from_pretrained(result.run_dir, device="cpu")
    [solution] = solver.solve(["12.43.1221.34.21"])
    print(solution.answer_text, solution.steps, solution.confidence, solution.check.ok)
    metrics = evaluate(result.run_dir)
    export(result.run_dir, "sudoku4x4-export")  # a folder to share; Solver.from_pretrained loads it

Each function is what a command of the ``rr`` line does, with the same code behind it:
:func:`train` is ``rr run``, :func:`evaluate` is ``rr eval``, :func:`export` is ``rr export``
and :meth:`Solver.solve` is ``rr solve`` for a list of puzzles at once. Bad input raises the
one-line errors the commands print: :class:`ConfigError` (experiment, overrides, a puzzle
of the wrong size), :class:`CheckpointError` (a folder that holds no checkpoint),
:class:`PuzzleError` (text the task cannot read). ``docs/python-api.md`` has a walk-through.

Plugin authors import :mod:`rrcore.api` instead; this module is for people using models.

.. include:: ../docs/python-api.md
   :start-after: <!-- token encodings -->
   :end-before: <!-- end of token encodings -->
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from rrcore.base.validators import STEP_COUNT_MAX
from rrcore.contracts.config import load_experiment
from rrcore.contracts.errors import CheckpointError, ConfigError
from rrcore.contracts.experiment import Experiment
from rrcore.contracts.protocols import Check, Puzzle, PuzzleError
from rrcore.tools import solve
from rrcore.tools.evaluate import evaluate_source
from rrcore.tools.export import export
from rrcore.tools.solve import Solution
from rrcore.training.loop import TrainResult
from rrcore.training.loop import train as train_experiment

__all__ = [
    "Check",
    "CheckpointError",
    "ConfigError",
    "Experiment",
    "PuzzleError",
    "Solution",
    "Solver",
    "TrainResult",
    "evaluate",
    "export",
    "load_experiment",
    "train",
]


class Solver:
    """A trained model with its task: reads puzzles as the task writes them, solves them
    in batches and checks the answers by the task's rules. Make one with :meth:`from_pretrained`.

    ``experiment`` is the experiment the model was trained with, ``task`` the task plugin's
    :class:`~rrcore.contracts.protocols.PuzzleTask`, ``metadata`` the data set's vocabulary and
    sequence length (:class:`~rrcore.contracts.metadata.DatasetMetadata`), ``device`` where it runs and
    ``checkpoint`` the folder its weights came from.
    """

    def __init__(self, loaded: solve.Solver) -> None:
        self._loaded = loaded
        self.experiment: Experiment = loaded.experiment
        self.task = loaded.task
        self.metadata = loaded.metadata
        self.device: torch.device = loaded.device
        self.checkpoint: Path = loaded.checkpoint

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device | None = None, overrides: Sequence[str] = ()
    ) -> Solver:
        """Load a run folder (its latest checkpoint), a checkpoint folder
        (``RUN/checkpoints/step_N``) or an export folder (``rr export``), EMA weights when
        the run kept them.

        ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a :class:`torch.device` (None or
        ``"auto"``: the experiment's ``run.device``). ``overrides`` are ``rr solve --set`` strings, e.g.
        ``["eval.max_steps=32"]`` to think longer or ``["eval.trajectories=8",
        "eval.trajectory_noise=0.1"]`` for test-time selection over noisy runs.
        """
        return cls(solve.Solver(_folder(path), list(overrides), _device(device)))

    def solve(
        self,
        puzzles: Sequence[str | np.ndarray | Puzzle],
        *,
        max_steps: int = 0,
        halting: Literal["adaptive", "fixed"] = "adaptive",
        batch_size: int = 256,
    ) -> list[Solution]:
        """Solve each puzzle; one :class:`Solution` per puzzle, in order.

        A puzzle is text as ``rr solve`` reads it (a Sudoku as 81 or 16 characters with
        ``.`` for a blank, a maze's text grid, an ARC task JSON, a Rubik scramble) or
        input tokens from :meth:`encode` (a 2-D array is a batch of rows). Each solution
        holds the answer (``answer_text``, ``grid``, ``prediction`` tokens), the ACT
        ``steps`` used, the Q-head's ``confidence`` and the task's ``check`` — what
        ``rr solve --json`` prints (:meth:`Solution.as_dict`), and the same answers.
        ``max_steps``: the step cap (0: the experiment's); ``halting``: ``adaptive``
        stops a puzzle when its Q-head says halt, ``fixed`` runs the whole cap;
        ``batch_size``: puzzles run together.
        """
        if isinstance(puzzles, str):
            raise TypeError("Solver.solve takes a list of puzzles; pass [puzzle] for one")
        if halting not in ("adaptive", "fixed"):
            raise ConfigError(f"halting={halting!r}: expected 'adaptive' or 'fixed'")
        if not 0 <= max_steps <= STEP_COUNT_MAX:
            raise ConfigError(f"max_steps={max_steps}: expected 0 (the experiment's cap) to {STEP_COUNT_MAX}")
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: expected at least 1 (the puzzles run together)")
        read = []
        for number, puzzle in enumerate(puzzles):
            try:
                read.append(self._loaded.read(puzzle))
            except (PuzzleError, ConfigError) as error:
                raise type(error)(f"puzzle {number}: {error}") from None
        if not read:
            return []
        return self._loaded.solve_many(read, max_steps=max_steps, adaptive=halting == "adaptive", batch_size=batch_size)

    def encode(self, puzzle: str) -> np.ndarray:
        """The input tokens (``seq_len``,) the model reads for a puzzle typed as text
        (the task's ``parse``; the module doc lists each bundled task's tokens)."""
        return self._loaded.read(puzzle).inputs

    def decode(self, tokens: np.ndarray) -> str:
        """A token row (a puzzle or an answer) as one line of the task's text."""
        return self.task.decode(np.asarray(tokens))

    def render(self, tokens: np.ndarray) -> str:
        """A token row drawn for people, e.g. a Sudoku grid over lines."""
        return self.task.render(np.asarray(tokens))


def train(
    experiment: str | Path | Experiment,
    overrides: Sequence[str] = (),
    *,
    run_dir: str | Path | None = None,
    resume: str | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train an experiment, as ``rr run`` does: a TOML file with ``overrides`` (``--set``
    strings such as ``"train.max_steps=100"``), or an :class:`Experiment` from
    :func:`load_experiment`. The run folder (default ``run.out_dir/run.name``) gets the
    checkpoints, metrics and ``config.toml``; ``resume`` (``"latest"``, ``"step_N"``)
    continues the run in it, ``overwrite`` moves a previous run there aside. Returns how
    the run ended (:class:`TrainResult`: ``run_dir``, ``checkpoint``, ``eval_results``...).
    """
    if isinstance(experiment, Experiment):
        if overrides:
            raise ConfigError("overrides apply to an experiment file: load_experiment(path, overrides), then train it")
    else:
        experiment = load_experiment(experiment, list(overrides))
    return train_experiment(experiment, resume=resume, run_dir=run_dir, overwrite=overwrite)


def evaluate(
    path: str | Path, overrides: Sequence[str] = (), *, output_dir: str | Path | None = None, trace: bool = False
) -> dict[str, float]:
    """Evaluate a run, checkpoint or export folder on its test split, as ``rr eval`` does,
    and return the metrics (e.g. ``sudoku/exact_accuracy``, ``eval/steps``).

    ``overrides``: ``--set`` strings for the saved experiment, e.g. ``"eval.halting=adaptive"``
    or another ``data`` to evaluate on. Each evaluator writes its files to ``output_dir``
    (default: ``eval/<checkpoint>-rr-eval`` in the run folder), with ``predictions.jsonl``
    (one row per puzzle; ``trace`` adds the prediction after every step) and ``steps.json``.
    """
    results, _ = evaluate_into(_folder(path), overrides, output_dir=output_dir, trace=trace)
    return results if results is not None else {}  # {} on the other ranks under torchrun


def evaluate_into(
    path: str | Path, overrides: Sequence[str] = (), *, output_dir: str | Path | None = None, trace: bool = False
) -> tuple[dict[str, float] | None, Path]:
    """:func:`evaluate`, also returning the folder the outputs went to (``rr eval`` prints
    its ``steps.json``); the metrics are None on the ranks other than 0."""
    return evaluate_source(path, overrides, output_dir, predictions=True, trace=trace)


def _folder(path: str | Path) -> Path:
    """``path`` when it is a folder, else a :class:`CheckpointError` saying what to pass."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"{path}: no such folder; expected a run folder, a checkpoint folder "
            f"(RUN/checkpoints/step_N) or an export folder (rr export)"
        )
    return path


def _device(choice: str | torch.device | None) -> torch.device | None:
    """The device named by ``choice`` (None or ``"auto"``: the experiment's ``run.device``);
    CUDA only when torch sees it."""
    if choice is None or choice == "auto":
        return None
    try:
        device = torch.device(choice)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={choice!r}: expected 'cpu', 'cuda', 'cuda:N' or a torch.device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={choice!r}: torch sees no CUDA device; use 'cpu'")
    return device
