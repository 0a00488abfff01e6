"""The evaluation engine: a pool of puzzles worked through by a batch of slots.

The papers evaluate a batch by running every row for ``halt_max_steps`` ACT steps.
:func:`run_pool` treats the batch as ``B`` slots working through a pool of puzzles.
With ``fixed`` halting that is exactly the papers' loop: each round the slots take the
next ``B`` puzzles and run the step cap, and the host never reads the device. With
``adaptive`` halting a row halts on its own Q-head decision or at the cap, and at the
next step its slot takes the next puzzle (the ACT carry already resets halted rows and
loads new data); shapes stay static and the host looks at the number of finished
puzzles only every ``sync_every`` steps.

The loop owns the halting decision: it replaces the carry's ``halted`` after each
step, so the ACT model's own evaluation rule (halt at ``halt_max_steps``) and the
compiled step (:class:`rrcore.model.compiled_step.CompiledStep`) are used as they are, and a cap
above the training cap simply lets rows think longer (inference-time scaling).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

import attrs
import torch
from torch import Tensor

from rrcore.contracts.errors import ConfigError
from rrcore.data.format import IGNORE_LABEL
from rrcore.model.act import q_says_halt
from rrcore.model.carry import broadcast_rows

if TYPE_CHECKING:
    from rrcore.contracts.protocols import Batch
    from rrcore.model.carry import StepOutput

POOL_BYTES = 1 << 30
"""Rough device memory for one pool of puzzles (inputs, labels, results); larger
evaluation splits are worked through in several pools."""

StepFn = Callable[..., "StepOutput"]


@attrs.define
class PoolResult:
    """What :func:`run_pool` found for each puzzle of a pool of ``M``.

    ``preds`` (M, L) the answer when the puzzle halted, ``q_halt`` (M,) its Q-halt
    logit then, ``steps`` (M,) int the ACT steps it used; ``outputs`` the other
    requested model outputs at halting. ``correct_at`` and ``halts_at`` (M, cap)
    bool: whether the prediction after step k+1 was exactly right, and whether the
    Q-head said halt there (False after the puzzle halted). ``trace`` (M, cap, L):
    the prediction after every step, when asked for. ``act_steps``: batch steps run;
    ``seconds``: the time they took (the device synchronised before and after).
    """

    preds: Tensor
    q_halt: Tensor
    steps: Tensor
    outputs: dict[str, Tensor]
    correct_at: Tensor
    halts_at: Tensor
    trace: Tensor | None
    act_steps: int
    seconds: float = 0.0


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op off CUDA), so host clocks time it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrajectoryNoise:
    """Gaussian noise on the latent of the trajectories of each puzzle in :func:`run_pool`.

    The pool holds ``trajectories`` consecutive rows per puzzle (row i is trajectory
    i % K); trajectory 0 stays noiseless. Called between ACT steps, outside the
    (compiled) step: it starts the halted rows on their new puzzle as the step would
    (:meth:`rrcore.model.act.ACTModel.load_halted`), adds ``std`` x N(0, 1) to the chosen
    states of the inner carry — of the rows that just started (``at="start"``) or of
    every row (``"every_step"``) — and clears ``halted``, so the step keeps that
    latent. The draws come from ``generator`` on the device and nothing reads the
    device; ``states``: the carry states that get noise (empty: every floating-point one).
    """

    def __init__(
        self,
        model: Any,
        *,
        trajectories: int,
        std: float,
        at: Literal["start", "every_step"],
        generator: torch.Generator,
        states: Iterable[str] = (),
    ) -> None:
        self.model = model
        self.trajectories = trajectories
        self.std = std
        self.at = at
        self.generator = generator
        self.states = tuple(states)

    @classmethod
    def from_settings(cls, loss_head: torch.nn.Module, settings: Any) -> TrajectoryNoise | None:
        """The noise an ``[eval]`` section asks for (None without trajectories), seeded with its ``seed``."""
        if settings.trajectories == 1:
            return None
        model = getattr(loss_head, "model", None)
        if not hasattr(model, "load_halted"):
            raise ConfigError(
                f"eval.trajectories needs a loss head whose ACT model is its .model "
                f"({type(loss_head).__name__} has none)"
            )
        device = next(iter(loss_head.parameters())).device
        return cls(
            model,
            trajectories=settings.trajectories,
            std=settings.trajectory_noise,
            at=settings.trajectory_noise_at,
            generator=torch.Generator(device=device).manual_seed(settings.seed),
            states=settings.trajectory_noise_states,
        )

    def __call__(self, carry: Any, batch: Batch) -> Any:
        """``carry`` ready for the next step: halted rows started on ``batch``, noise added."""
        carry = self.model.load_halted(carry, batch)
        noisy = carry.current_data["index"] % self.trajectories != 0
        if self.at == "start":
            noisy = noisy & carry.halted
        inner = dict(carry.inner)
        for name in self._names(inner):
            state = inner[name]
            draw = torch.randn(state.shape, generator=self.generator, device=state.device, dtype=state.dtype)
            scale = broadcast_rows((noisy * self.std).to(state.dtype), state)
            inner[name] = state + scale * draw
        return carry._replace(inner=inner, halted=torch.zeros_like(carry.halted))

    def _names(self, inner: dict[str, Tensor]) -> tuple[str, ...]:
        if not self.states:
            return tuple(name for name, state in inner.items() if state.is_floating_point())
        unknown = [name for name in self.states if name not in inner]
        if unknown:
            raise ConfigError(
                f"eval.trajectory_noise_states names {', '.join(map(repr, unknown))}, which the model's "
                f"carry lacks; it has {', '.join(map(repr, inner))}"
            )
        return self.states


@torch.no_grad()
def run_pool(
    step: StepFn,
    loss_head: torch.nn.Module,
    pool: Batch,
    *,
    batch_size: int,
    max_steps: int,
    adaptive: bool,
    q_continue: bool = False,
    sync_every: int = 8,
    trace: bool = False,
    keep_outputs: Iterable[str] = (),
    noise: TrajectoryNoise | None = None,
) -> PoolResult:
    """Solve every puzzle of ``pool`` (``inputs``, ``labels``, ``puzzle_identifiers``,
    each with M rows) with ``batch_size`` slots; see the module doc.

    ``step(carry, batch)`` runs one ACT step like the loss head (pass the compiled
    :class:`~rrcore.model.compiled_step.CompiledStep`); ``loss_head`` supplies the initial carry.
    ``noise`` perturbs the latent between steps (the pool's rows its trajectories).
    """
    work = _PoolWork.start(pool, max_steps, adaptive, q_continue, trace, tuple(keep_outputs))
    synchronize(work.device)
    started = time.perf_counter()
    slots = torch.arange(batch_size, device=work.device)
    carry = loss_head.initial_carry(work.batch_for(slots))  # every row halted: the first step loads
    if adaptive:
        act_steps = _run_adaptive(step, work, carry, sync_every, noise)
    else:
        starts = range(0, work.count, batch_size)
        for start in starts:  # the papers' loop: the next batch of puzzles, every row to the cap
            batch = work.batch_for(slots + start)
            for k in range(max_steps):
                if noise is not None:
                    carry = noise(carry, batch)
                stepped = step(carry, batch)
                carry = work.record(stepped.carry, stepped.outputs, keep=k == max_steps - 1)
        act_steps = len(starts) * max_steps
    synchronize(work.device)
    return work.result(act_steps, time.perf_counter() - started)


def _run_adaptive(step: StepFn, work: _PoolWork, carry: Any, sync_every: int, noise: TrajectoryNoise | None) -> int:
    """Steps with refill until every puzzle of ``work`` halted; returns the batch steps run."""
    cursor = torch.zeros((), dtype=torch.long, device=work.device)
    finished = torch.zeros((), dtype=torch.long, device=work.device)
    act_steps = 0
    # Past every puzzle of the pool run one after another to the cap, more steps are waste.
    steps_between_looks = min(sync_every, work.count * work.max_steps + 1)
    while True:
        for _ in range(steps_between_looks):
            index, cursor = _refill(carry, cursor)
            batch = work.batch_for(index)
            if noise is not None:
                carry = noise(carry, batch)
            stepped = step(carry, batch)
            act_steps += 1
            carry = work.record(stepped.carry, stepped.outputs)
            finished = finished + (carry.halted & (carry.current_data["index"] < work.count)).sum()
        if int(finished) >= work.count:  # the only host look at the device, every sync_every steps
            return act_steps


def _refill(carry: Any, cursor: Tensor) -> tuple[Tensor, Tensor]:
    """Halted rows take the next puzzles of the pool, in slot order: each slot's puzzle
    index and the cursor past the puzzles handed out."""
    halted = carry.halted
    index = torch.where(halted, cursor + torch.cumsum(halted, 0) - 1, carry.current_data["index"])
    return index, cursor + halted.sum()


@attrs.define
class _PoolWork:
    """One pool in :func:`run_pool`: its rows, the halting rule and what was found so far.

    Every per-puzzle buffer has one row past the pool's ``count``: idle slots (the pool ran
    out) work on it and rows that are not done write to it; it is dropped at the end.
    """

    source: Batch
    count: int
    max_steps: int
    adaptive: bool
    q_continue: bool
    keep_outputs: tuple[str, ...]
    preds: Tensor
    q_halt: Tensor
    steps: Tensor
    correct_at: Tensor
    halts_at: Tensor
    trace: Tensor | None
    kept: dict[str, Tensor] = attrs.Factory(dict)

    @classmethod
    def start(
        cls, pool: Batch, max_steps: int, adaptive: bool, q_continue: bool, trace: bool, keep_outputs: tuple[str, ...]
    ) -> _PoolWork:
        """Empty buffers for ``pool``, with the dropped row's labels ignored."""
        count, seq_len = pool["inputs"].shape[0], pool["inputs"].shape[1]
        device = pool["inputs"].device
        source = {k: torch.cat([v, v[:1]]) for k, v in pool.items()}
        source["labels"][count] = IGNORE_LABEL
        rows = count + 1
        return cls(
            source,
            count,
            max_steps,
            adaptive,
            q_continue,
            keep_outputs,
            preds=torch.zeros(rows, seq_len, dtype=torch.long, device=device),
            q_halt=torch.zeros(rows, dtype=torch.float32, device=device),
            steps=torch.zeros(rows, dtype=torch.int32, device=device),
            correct_at=torch.zeros(rows, max_steps, dtype=torch.bool, device=device),
            halts_at=torch.zeros(rows, max_steps, dtype=torch.bool, device=device),
            trace=torch.zeros(rows, max_steps, seq_len, dtype=torch.long, device=device) if trace else None,
        )

    @property
    def device(self) -> torch.device:
        return self.preds.device

    def batch_for(self, index: Tensor) -> Batch:
        """The batch whose slots work on puzzles ``index`` (past the pool: the dropped row)."""
        rows = index.clamp(max=self.count)
        return {**{k: v[rows] for k, v in self.source.items()}, "index": index}

    def record(self, carry: Any, outputs: dict[str, Tensor], keep: bool = True) -> Any:
        """Score the step just run, decide which rows halt and, with ``keep`` (fixed halting
        passes it at the cap only), keep the answers of those that did; returns the carry
        with that decision."""
        index = carry.current_data["index"]
        live = index < self.count
        prediction = outputs["preds"] if "preds" in outputs else outputs["logits"].argmax(-1)
        says_halt = q_says_halt(outputs, self.q_continue)
        self._score_step(carry, index.clamp(max=self.count), prediction, says_halt)
        halted = (carry.steps >= self.max_steps) | ~live
        if self.adaptive:
            halted = halted | says_halt
        if keep:
            done = torch.where(halted & live, index, self.count)  # the others write to the dropped row
            self._keep_answers(done, prediction, outputs, carry.steps)
        return carry._replace(halted=halted)

    def _score_step(self, carry: Any, row: Tensor, prediction: Tensor, says_halt: Tensor) -> None:
        labels = carry.current_data["labels"]
        at_step = (carry.steps - 1).clamp(max=self.max_steps - 1).long()
        self.correct_at[row, at_step] = ((prediction == labels) | (labels == IGNORE_LABEL)).all(-1)
        self.halts_at[row, at_step] = says_halt
        if self.trace is not None:
            self.trace[row, at_step] = prediction.long()

    def _keep_answers(self, done: Tensor, prediction: Tensor, outputs: dict[str, Tensor], steps: Tensor) -> None:
        self.preds.index_copy_(0, done, prediction.long())
        self.q_halt.index_copy_(0, done, outputs["q_halt_logits"].float())
        self.steps.index_copy_(0, done, steps.to(torch.int32))
        for key in self.keep_outputs:
            if key not in self.kept:
                self.kept[key] = torch.zeros(
                    self.count + 1, *outputs[key].shape[1:], dtype=outputs[key].dtype, device=self.device
                )
            self.kept[key].index_copy_(0, done, outputs[key])

    def result(self, act_steps: int, seconds: float) -> PoolResult:
        """What was found, without the dropped row."""
        count = self.count
        return PoolResult(
            self.preds[:count],
            self.q_halt[:count],
            self.steps[:count],
            {k: v[:count] for k, v in self.kept.items()},
            self.correct_at[:count],
            self.halts_at[:count],
            self.trace[:count] if self.trace is not None else None,
            act_steps,
            seconds,
        )


def pools(
    batches: Iterable[Batch], seq_len: int, max_steps: int, trace: bool, copies: int = 1
) -> Iterable[list[Batch]]:
    """Consecutive evaluation batches grouped into pools of about :data:`POOL_BYTES`
    (``copies``: rows each puzzle becomes, e.g. its augmentations)."""
    per_row = copies * (seq_len * (8 + 8 + (8 * max_steps if trace else 0)) + 2 * max_steps)
    group: list[Batch] = []
    rows = 0
    for batch in batches:
        group.append(batch)
        rows += batch["inputs"].shape[0]
        if rows * per_row >= POOL_BYTES:
            yield group
            group, rows = [], 0
    if group:
        yield group
