"""A saved run's model, run eagerly one ACT step at a time: what ``rr report`` and
``rr analyze`` look at.

:func:`open_run` rebuilds a run from its folder (its ``config.toml`` and latest
checkpoint, or fresh weights for an untrained baseline) with :func:`rrcore.training.build.build_run`,
so the model, data and EMA are exactly the run's. :func:`trace_steps` runs test
examples through every ACT step of the plain (uncompiled) model in eval mode and
keeps the decoded answer and Q-values after each step and, on request, every
recorded recurrent state (:class:`rrcore.contracts.protocols.RecordsStates`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import numpy as np
import torch

from rrcore.base import distributed
from rrcore.contracts.config import load_experiment
from rrcore.contracts.errors import CheckpointError
from rrcore.contracts.experiment import Experiment
from rrcore.data.format import IGNORE_LABEL
from rrcore.evaluation.split import eval_mode
from rrcore.training.build import build_run
from rrcore.training.checkpoint import hold_checkpoint
from rrcore.training.run import Run


class RunInputError(ValueError):
    """A run folder that cannot be opened (missing, no config, no checkpoint); one line."""


@attrs.define
class OpenRun:
    """A run rebuilt for inspection: its parts (model, data, EMA; no optimizers) and what was loaded."""

    run_dir: Path
    experiment: Experiment
    run: Run
    checkpoint: Path | None  # None: untrained weights

    @property
    def label(self) -> str:
        """``step_N`` of the checkpoint, or ``untrained``."""
        return self.checkpoint.name if self.checkpoint is not None else "untrained"


def run_config(run_dir: str | Path) -> Path:
    """The run folder's ``config.toml``, or :class:`RunInputError` saying what is wrong."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise RunInputError(f"{folder}: no such run folder")
    config = folder / "config.toml"
    if not config.exists():
        raise RunInputError(f"{folder}: not a run folder (no config.toml; rr run writes one)")
    return config


@contextlib.contextmanager
def open_run(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    checkpoint: str = "latest",
    untrained: bool = False,
    registry=None,
    untrained_option: bool = False,
) -> Iterator[OpenRun]:
    """Rebuild the run in ``run_dir`` from ``checkpoint`` (``latest``, ``step_N`` or a path),
    or with freshly initialised weights (the run's seed) when ``untrained``.
    ``untrained_option``: the command has ``--untrained``, which a missing checkpoint's
    message then suggests."""
    folder = Path(run_dir)
    config = run_config(folder)
    experiment = load_experiment(config, list(overrides), registry)
    try:
        path = None
        with contextlib.ExitStack() as holding:  # a run saving meanwhile rotates others, not this one
            if not untrained:
                try:
                    path = holding.enter_context(hold_checkpoint(checkpoint, folder / "checkpoints"))
                except CheckpointError as error:
                    fresh = ", or use --untrained for fresh weights" if untrained_option else ""
                    raise RunInputError(f"{error} (train longer{fresh})") from None
            run = build_run(experiment, registry, optimizers=False, evaluators=False)
            if path is not None:
                run.restore(path)
        yield OpenRun(folder, experiment, run, path)
    finally:
        distributed.teardown()


@attrs.define
class StepTrace:
    """``count`` test examples through ``steps`` ACT steps.

    ``index`` (N,) example rows in the test split; ``inputs`` / ``labels`` (N, L)
    (labels -100 where not scored); ``preds`` (T, N, L) the decoded answer after each
    step; ``q_halt`` / ``q_continue`` (T, N) logits (q_continue None unless the run
    halts on it, ``[act] q_continue``); ``states`` name -> (N, U, positions, hidden) float32, every
    recorded update of the state over all T steps in order (empty unless recorded),
    with ``updates_per_step`` name -> updates in one ACT step.
    """

    index: np.ndarray
    inputs: np.ndarray
    labels: np.ndarray
    preds: np.ndarray
    q_halt: np.ndarray
    q_continue: np.ndarray | None
    states: dict[str, np.ndarray] = attrs.field(factory=dict)
    updates_per_step: dict[str, int] = attrs.field(factory=dict)

    @property
    def count(self) -> int:
        return len(self.index)

    @property
    def steps(self) -> int:
        return self.preds.shape[0]

    def correct(self) -> np.ndarray:
        """(T, N) whether the whole answer is right after each step."""
        scored = self.labels != IGNORE_LABEL
        return ((self.preds == self.labels[None]) | ~scored[None]).all(axis=-1)

    def token_accuracy(self) -> np.ndarray:
        """(T,) mean over examples of the share of scored tokens right after each step."""
        scored = self.labels != IGNORE_LABEL
        right = ((self.preds == self.labels[None]) & scored[None]).sum(-1)
        return (right / np.maximum(scored.sum(-1), 1)[None]).mean(axis=1)


def model_records_states(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "recording_states", None))


@torch.no_grad()
def trace_steps(run: OpenRun, count: int, record_states: bool = False) -> StepTrace:
    """The first ``count`` test examples (fewer if the split is smaller) through every ACT step.

    Runs the plain loss head eagerly (never the compiled step) in eval mode, with the
    EMA weights when the run keeps them, as evaluation does.
    """
    built = run.run
    if built.eval_data is None:
        raise RunInputError(f"{built.data_dir}: the data set has no test split to look at")
    model = built.model
    if record_states and not model_records_states(model):
        spec = built.registry.get("model", run.experiment.model.plugin)
        raise RunInputError(
            f"model plugin {spec.name!r} ({spec.distribution} {spec.version}) does not record its "
            f"states: it needs recording_states() (rrcore.contracts.protocols.RecordsStates)"
        )
    parts: dict[str, list[np.ndarray]] = {}
    states: dict[str, list[np.ndarray]] = {}
    updates: dict[str, int] = {}
    steps = run.experiment.act.halt_max_steps
    seen = 0
    with eval_mode(built.loss_head), built.evaluation_weights():
        for batch in built.eval_data.eval_batches():
            if seen >= count:
                break
            keep = batch["valid"].cpu().numpy().copy()
            keep &= np.cumsum(keep) <= count - seen
            seen += int(keep.sum())
            _trace_batch(run, batch, keep, steps, record_states, parts, states, updates)
    return StepTrace(
        index=np.concatenate(parts["index"]),
        inputs=np.concatenate(parts["inputs"]),
        labels=np.concatenate(parts["labels"]),
        preds=np.concatenate(parts["preds"], axis=1),
        q_halt=np.concatenate(parts["q_halt"], axis=1),
        q_continue=np.concatenate(parts["q_continue"], axis=1) if "q_continue" in parts else None,
        states={name: np.concatenate(chunks) for name, chunks in states.items()},
        updates_per_step=updates,
    )


def _trace_batch(
    run: OpenRun,
    batch: dict[str, torch.Tensor],
    keep: np.ndarray,
    steps: int,
    record_states: bool,
    parts: dict[str, list[np.ndarray]],
    states: dict[str, list[np.ndarray]],
    updates: dict[str, int],
) -> None:
    """One batch through ``steps`` ACT steps; appends the ``keep`` rows to ``parts`` and ``states``."""
    model, loss_head = run.run.model, run.run.loss_head
    recording = model.recording_states() if record_states else contextlib.nullcontext([])
    preds, q_halt, q_continue = [], [], []
    with recording as records:
        carry = loss_head.initial_carry(batch)
        for _ in range(steps):
            result = loss_head(carry, batch)
            carry, outputs = result.carry, result.outputs
            preds.append(outputs["preds"].cpu().numpy()[keep])
            q_halt.append(outputs["q_halt_logits"].float().cpu().numpy()[keep])
            if run.experiment.act.q_continue:
                q_continue.append(outputs["q_continue_logits"].float().cpu().numpy()[keep])
    for name in ("index", "inputs", "labels"):
        parts.setdefault(name, []).append(batch[name].cpu().numpy()[keep])
    parts.setdefault("preds", []).append(np.stack(preds, axis=0))
    parts.setdefault("q_halt", []).append(np.stack(q_halt, axis=0))
    if q_continue:
        parts.setdefault("q_continue", []).append(np.stack(q_continue, axis=0))
    for name in records[0] if records else {}:
        updates[name] = len(records[0][name])
        trajectory = torch.stack([s for record in records for s in record[name]], dim=1)
        states.setdefault(name, []).append(trajectory.float().cpu().numpy()[keep])
