"""The contracts between the core and plugins.

A third-party author implements one of these and registers a factory for it
through a registration hook (:mod:`rrcore.contracts.hookspecs`). Tensors follow one naming
scheme throughout rr:

``batch``
    ``dict[str, Tensor]`` with ``inputs`` (B, L) int32 token ids,
    ``labels`` (B, L) int64 targets with ``-100`` where nothing is predicted,
    ``puzzle_identifiers`` (B,) int32. Evaluation batches add ``index`` (B,) int64,
    the example's row in its split, and ``valid`` (B,) bool (False on padding rows).
``carry``
    the state kept between ACT steps: the core's :class:`rrcore.model.carry.Carry` (a model's own
    part of it is ``carry.inner``, an :data:`InnerCarry`); opaque here, typed :data:`Carry`.
``outputs``
    ``dict[str, Tensor]`` with at least ``logits`` (B, L, V) and
    ``q_halt_logits`` (B,); ``q_continue_logits`` (B,) when the model predicts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs
import torch
from torch import Tensor

Batch = dict[str, Tensor]
Outputs = dict[str, Tensor]
InnerCarry = dict[str, Tensor]
Carry = Any  # rrcore.model.carry.Carry
# Fields of other contracts' types are Any, so that this module imports none of them (it is
# the root of the hooks' and the model layer's imports): the comments name each type.


@attrs.define
class ModelContext:
    """What a model factory receives besides its config.

    ``metadata`` describes the data set (vocab size, sequence length, number of
    puzzle identifiers); ``batch_size`` is the rows of one ACT step on this rank
    (``train.global_batch_size`` / ranks / ``train.grad_accum_steps``; 1 in ``rr solve``),
    which sizes the sparse puzzle embedding's training buffers; ``forward_dtype`` is the activation dtype
    (bfloat16 on CUDA, float32 on CPU) that embeddings should produce.
    """

    metadata: Any  # rrcore.contracts.metadata.DatasetMetadata
    batch_size: int
    forward_dtype: torch.dtype = torch.float32


@attrs.define
class EvalContext:
    """What evaluator factories receive besides their config; an evaluator is built once
    per run and then scores every evaluation of it.

    ``data_dir`` is the split folder being evaluated (``.../test``), so evaluators can
    read files their builder wrote beside the arrays (ratings, augmentation maps).
    Where a pass writes its files is :meth:`Evaluator.begin_eval`'s ``output_dir``.
    """

    metadata: Any  # rrcore.contracts.metadata.DatasetMetadata
    data_dir: Path
    rank: int = 0
    world_size: int = 1
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))


@attrs.define
class RunContext:
    """What lifecycle hooks and logger factories see of a training run; ``step`` is the
    optimizer steps taken so far."""

    experiment: Any  # rrcore.contracts.experiment.Experiment
    run_dir: Path
    rank: int
    world_size: int
    device: torch.device
    registry: Any  # rrcore.contracts.registry.Registry
    metadata: Any = None  # rrcore.contracts.metadata.DatasetMetadata
    total_steps: int = 0
    step: int = 0


@runtime_checkable
class Model(Protocol):
    """An architecture's inner recurrence: one ACT step, nothing else.

    The core's :class:`rrcore.model.act.ACTModel` wraps it and does halting, step
    counting, exploration and carry resets. Implement it as a ``torch.nn.Module``;
    subclassing :class:`rrcore.model.model_kit.ReasoningModel` gives the input layer and the
    two carry methods, leaving ``forward``:

    * ``initial_carry(batch)`` returns the latent state for a batch: a dict of
      tensors with the batch size as first dimension. Values do not matter; every
      row is reset before its first step.
    * ``reset_carry(reset, carry)`` returns ``carry`` with rows where ``reset``
      (B,) bool is True replaced by the initial state. Use ``torch.where``, never
      indexing, so the step has no host synchronisation.
    * ``forward(carry, batch)`` runs one ACT step (e.g. TRM's ``H_cycles`` x
      ``L_cycles`` updates) and returns ``(new_carry, outputs)``. ``new_carry``
      must be detached (gradients never cross ACT steps).
    * ``predicts_q_continue`` (optional class attribute, read from the registered
      factory before the model is built): True when the model halts on
      q_halt > q_continue and trains Q-continue (HRM), False when it halts on q_halt
      alone. The experiment's ``[act] q_continue`` defaults to it and may not
      contradict it; without it ``[act] q_continue`` is unchecked (default false).

    The core trains every :class:`rrcore.model.puzzle_io.SparsePuzzleEmbedding` among the model's
    modules with sign-SGD instead of the main optimizer; it reads no ``puzzle_emb``
    attribute (:class:`~rrcore.model.model_kit.ReasoningModel` has one for people and tests).
    """

    def initial_carry(self, batch: Batch) -> InnerCarry: ...

    def reset_carry(self, reset: Tensor, carry: InnerCarry) -> InnerCarry: ...

    def forward(self, carry: InnerCarry, batch: Batch) -> tuple[InnerCarry, Outputs]: ...


@runtime_checkable
class RecordsStates(Protocol):
    """A model whose named recurrent states ``rr analyze`` can record (optional).

    ``recording_states()`` is a context manager yielding a list; while it is open,
    every forward call (one ACT step) appends one dict mapping each state's name to
    detached copies of that state after every update, in update order, each
    (B, positions, hidden). HRM records ``z_H`` and ``z_L``, TRM ``z_H`` (its answer
    y) and ``z_L`` (its latent z), URM ``hidden``; names starting ``z_H`` / ``z_L`` give
    the high/low pair whose participation ratios are compared. Recording must not
    change outputs and must cost nothing when off (a plain Python flag): mix in
    :class:`rrcore.model.states.StateRecorder` rather than writing it again.
    """

    def recording_states(self) -> Any: ...


@runtime_checkable
class LossHead(Protocol):
    """Turns model outputs into a scalar loss and metrics (a ``torch.nn.Module``).

    ``forward(carry, batch, exploration=None)`` runs one ACT step of the wrapped model
    (``exploration``: the ACT model's per-row minimum steps for this training step,
    drawn by the trainer outside the compiled step; pass it on) and returns a
    :class:`rrcore.model.carry.StepOutput` (``rrcore.api.StepOutput``), the named tuple
    ``(carry, loss, metrics, outputs, all_halted)``: the core reads its fields by name. The
    carry is the core's :class:`rrcore.model.carry.Carry`, as the wrapped
    :class:`~rrcore.model.act.ACTModel` returns it (the trainer detaches it between steps and
    checkpoints its fields). ``loss`` is a 0-dim tensor already summed over the rank's rows
    (the trainer scales by 1/global batch), ``metrics`` a dict of 0-dim tensors that are
    *sums* over rows, with ``count`` the rows that halted at this step. ``all_halted`` is a
    0-dim bool tensor that no caller reads: training takes one ACT step per optimizer step,
    and evaluation decides halting itself (its step cap, or the Q-head's logits). Nothing here
    may call ``.item()``.

    ``metric_reductions`` maps every other metric name to what its sum is divided by
    when logged: ``"example"`` (all rows stepped: losses) or ``"halted"`` (the
    ``count`` rows: accuracies); see :mod:`rrcore.model.metrics`.
    """

    metric_reductions: dict[str, str]

    def initial_carry(self, batch: Batch) -> Carry: ...

    def forward(
        self, carry: Carry, batch: Batch, exploration: Tensor | None = None
    ) -> tuple[Carry, Tensor, dict[str, Tensor], Outputs, Tensor]: ...


@runtime_checkable
class Evaluator(Protocol):
    """Scores predictions on an evaluation split.

    Created once per run by an :class:`~rrcore.contracts.specs.EvaluatorSpec` factory with
    ``(config, context)`` where ``context`` is an :class:`EvalContext` (metadata, data
    folder, rank and world size, device): do expensive preparation (reading labels,
    solving the test split) there, not in ``begin_eval``.

    * ``required_outputs`` (optional, default none): names of outputs the evaluator
      reads besides ``preds`` and ``q_halt_logits`` (e.g. ``{"q_continue_logits"}``);
      evaluation keeps only those.
    * ``begin_eval(output_dir)`` resets state before a pass; files of that pass
      (predictions, submissions) go under ``output_dir`` (a :class:`~pathlib.Path`).
    * ``update_batch(batch, outputs)`` receives each evaluation batch once its puzzles
      halted; ``outputs`` holds, as of each row's halting step, ``preds`` (B, L) argmax tokens,
      ``q_halt_logits`` (B,) and the required outputs. Ignore rows where ``batch["valid"]`` is False. Keep
      tensors on the device; avoid host synchronisation per batch where you can.
    * ``result()`` is called on every rank after the pass; gather across ranks
      (``torch.distributed`` when initialised) and return a dict of metrics
      (floats) on rank 0, ``None`` elsewhere.
    * ``headline_metrics`` (optional): names of the metrics a user looks at first,
      printed in the summary line at the end of ``rr run`` (without it: ``accuracy``
      and ``exact_accuracy``); the conformance kit checks a perfect answer scores 1.0 on
      each.

    The optional attributes are read with a default, so they are not members of this
    protocol.
    """

    def begin_eval(self, output_dir: Path) -> None: ...

    def update_batch(self, batch: Batch, outputs: Outputs) -> None: ...

    def result(self) -> dict[str, float] | None: ...


@runtime_checkable
class BatchAugmenter(Protocol):
    """Fresh answer-preserving transforms of every training batch, drawn on the device.

    Offered by a data set plugin (:class:`~rrcore.contracts.specs.DatasetSpec`'s
    ``batch_augmenter``), so a run can draw new augmentations each step on top of the
    original puzzles instead of reading augmented copies built ahead. The trainer calls
    ``augmenter(batch, generator, row_offset, global_batch_size)`` on this rank's rows of
    each training batch, outside the compiled step and before the batch is split into
    micro-batches; evaluation batches are never augmented.

    ``generator`` is a :class:`torch.Generator` on the batch's device, seeded from
    ``run.seed`` alike on every rank and saved with checkpoints. Draw the random numbers
    for all ``global_batch_size`` rows and use rows ``row_offset`` to ``row_offset + B``,
    so a run does not depend on how many ranks share the batch (as ACT exploration does).
    Return a new batch with ``inputs`` and ``labels`` transformed alike (same shapes and
    dtypes; ``-100`` labels stay ``-100``) and the other entries unchanged. Keep every
    tensor on the device: no ``.item()``, ``.cpu()`` or Python branching on tensor values.

    ``puzzle_identifiers`` are passed through: every fresh copy of a puzzle shares the
    puzzle's identifier, where a builder's augmented copies may each have their own (a
    per-puzzle embedding then learns one vector for all copies).
    """

    def __call__(self, batch: Batch, generator: torch.Generator, row_offset: int, global_batch_size: int) -> Batch: ...


@runtime_checkable
class Logger(Protocol):
    """Receives metrics on rank 0: ``log(step, metrics)``, then ``close()``."""

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class PuzzleError(ValueError):
    """A puzzle a user gave that a :class:`PuzzleTask` cannot read; the message says what
    is wrong in one line (wrong size, a bad character and where, contradicting givens)."""


@attrs.frozen
class Check:
    """A task's verdict on an answer: ``ok`` and one line saying why. ``ok`` is None
    when there is nothing to check against (e.g. an ARC task given without its test
    output)."""

    ok: bool | None
    message: str


@attrs.frozen
class Puzzle:
    """A puzzle as :meth:`PuzzleTask.parse` read it, for tasks that need more than its
    tokens: ``inputs`` (seq_len,) tokens, ``answer`` the expected answer the user gave
    with the puzzle (task-defined, e.g. an ARC test output grid; None when none), passed
    back to ``check``, and ``note``, one line ``rr solve`` prints about how the puzzle
    was posed to the model (e.g. which puzzle embedding it used)."""

    inputs: Any
    answer: Any = None
    note: str = ""


@runtime_checkable
class PuzzleTask(Protocol):
    """Single puzzles of one task: what ``rr solve``, readable predictions and
    test-time selection need. Created by a :class:`~rrcore.contracts.specs.TaskSpec` factory
    ``factory(data_config, metadata)`` (the experiment's ``[data]`` config and the
    built data set's :class:`~rrcore.contracts.metadata.DatasetMetadata`).

    Token rows are numpy integer arrays of length ``metadata.seq_len`` in the data
    set's vocabulary, as the model reads (``inputs``) and predicts them.

    * ``parse(text)`` reads a puzzle as a user writes it (the task decides: a line,
      a grid, a JSON document) and returns its input tokens (seq_len,), or a
      :class:`Puzzle` when it also read an expected answer or has a note for the
      user; raise :class:`PuzzleError` naming what is wrong. The model sees the
      puzzle with the data set's blank puzzle identifier.
    * ``decode(tokens)`` is one line of text for a token row (predictions files).
    * ``render(tokens)`` is the row as a person reads it, e.g. a grid over lines.
    * ``check(inputs, prediction)`` is the task's own verdict on an answer
      (Sudoku rules, a shortest path, a simulated cube...), independent of any
      label. Tasks whose puzzles can carry their answer (:class:`Puzzle`'s
      ``answer``) also take ``check(inputs, prediction, answer=...)``.
    * ``augmentations`` (int attribute, 0 if none): how many distinct answer-preserving
      transforms ``augment`` can draw; test-time selection needs at least 1.
    * ``augment(inputs, count, rng)`` maps (N, seq_len) inputs to (N, count, seq_len)
      transformed copies, copy 0 the identity, and returns them with whatever
      ``invert`` needs; ``invert(predictions, state)`` maps (N, count, seq_len)
      predictions of the copies back to the original puzzles' frame.
    """

    augmentations: int

    def parse(self, text: str) -> Any: ...

    def decode(self, tokens: Any) -> str: ...

    def render(self, tokens: Any) -> str: ...

    def check(self, inputs: Any, prediction: Any) -> Check: ...

    def augment(self, inputs: Any, count: int, rng: Any) -> tuple[Any, Any]: ...

    def invert(self, predictions: Any, state: Any) -> Any: ...
