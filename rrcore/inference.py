"""Evaluation beyond the papers' protocol: adaptive halting with batch refill, a step
cap above the training cap, every step scored from one pass, and predictions on disk.

The papers evaluate a batch by running every row for ``halt_max_steps`` ACT steps.
:func:`run_pool` instead treats the batch as ``B`` slots working through a pool of
puzzles: a row halts on its own Q-head decision (``adaptive``) or at the step cap,
and at the next step its slot takes the next puzzle of the pool (the ACT carry
already resets halted rows and loads new data). Shapes stay static and nothing
reads the device within a step; the host looks at the number of finished puzzles
only every ``sync_every`` steps. With ``fixed`` halting every row runs to the cap
and the slots refill together, which is exactly the batched protocol.

The loop owns the halting decision: it replaces the carry's ``halted`` after each
step, so the ACT model's own evaluation rule (halt at ``halt_max_steps``) and the
compiled step (:class:`rrcore.act.CompiledStep`) are used as they are, and a cap
above the training cap simply lets rows think longer (inference-time scaling).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import torch
from torch import Tensor

from rrcore.evaluation import all_reduce_sum, gather_to_rank0
from rrcore.nn import IGNORE_LABEL
from rrcore.protocols import Batch, PuzzleTask
from rrcore.validators import STEP_COUNT_MAX, at_least, in_range, non_negative

POOL_BYTES = 1 << 30
"""Rough device memory for one pool of puzzles (inputs, labels, results); larger
evaluation splits are worked through in several pools."""


@attrs.define
class EvalConfig:
    """The ``[eval]`` section: how evaluation runs the ACT loop.

    ``halting``: ``fixed`` runs every puzzle for the step cap (the papers' protocol);
    ``adaptive`` stops each puzzle when its Q-head says halt (q_halt > 0, or
    q_halt > q_continue when the experiment learns Q-continue) or at the cap, and
    its batch slot takes the next puzzle. ``max_steps``: the step cap (0:
    ``act.halt_max_steps``); above the training cap models think longer than they
    were trained to (inference-time scaling). ``sync_every``: ACT steps between
    the host's looks at how many puzzles are done. ``augmentations``: test-time
    selection over this many augmented copies of each puzzle (0: off; needs the
    task's ``augment``), with ``seed`` for drawing them.

    ``trajectories`` K: test-time selection over K runs of each puzzle (of each
    augmented copy, with ``augmentations``: K x A copies) that differ by Gaussian noise
    of std ``trajectory_noise`` on the model's latent (PTRM); 1: off. Trajectory 0 runs
    without noise, so its answer is exactly the plain evaluation's (accuracy@1) and
    K = 1 is the evaluation without trajectories. ``trajectory_noise_at``: ``start``
    adds the noise once, to the initial latent of each puzzle's run; ``every_step`` to
    the latent carried into every ACT step (the first included).
    ``trajectory_noise_states``: the model's carry states that get noise (TRM and
    HRM: ``z_H``, ``z_L``; empty: every floating-point state). The noise is drawn on
    the device from a generator seeded with ``seed``, so a rerun repeats it.
    :func:`select_over_copies` reports each selection rule beside accuracy@1.

    Left at the defaults, evaluation during training is the papers' batched loop;
    ``rr eval`` always runs through :func:`evaluate_split` and reports more.
    """

    halting: Literal["fixed", "adaptive"] = "fixed"
    max_steps: int = attrs.field(default=0, validator=in_range(0, STEP_COUNT_MAX))
    sync_every: int = attrs.field(default=8, validator=at_least(1))
    augmentations: int = attrs.field(default=0, validator=non_negative)
    seed: int = attrs.field(default=0, validator=non_negative)
    trajectories: int = attrs.field(default=1, validator=at_least(1))
    trajectory_noise: float = attrs.field(default=0.0, validator=non_negative)
    trajectory_noise_at: Literal["start", "every_step"] = "start"
    trajectory_noise_states: list[str] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if self.trajectories > 1 and not self.trajectory_noise:
            raise ValueError(
                f"trajectories = {self.trajectories} needs trajectory_noise > 0: without noise "
                f"every trajectory is the same run"
            )

    @property
    def selects(self) -> bool:
        """Whether evaluation also runs test-time selection (augmentations or trajectories)."""
        return self.augmentations > 0 or self.trajectories > 1

    @property
    def copies(self) -> int:
        """Runs of each puzzle in test-time selection: augmented copies x trajectories."""
        return max(self.augmentations, 1) * self.trajectories

    def step_cap(self, halt_max_steps: int) -> int:
        """The evaluation step cap given the training cap."""
        return self.max_steps or halt_max_steps


StepFn = Callable[..., tuple[Any, Tensor, dict[str, Tensor], dict[str, Tensor], Tensor]]


@attrs.define
class PoolResult:
    """What :func:`run_pool` found for each puzzle of a pool of ``M``.

    ``preds`` (M, L) the answer when the puzzle halted, ``q_halt`` (M,) its Q-halt
    logit then, ``steps`` (M,) int the ACT steps it used; ``outputs`` the other
    requested model outputs at halting. ``correct_at`` and ``halts_at`` (M, cap)
    bool: whether the prediction after step k+1 was exactly right, and whether the
    Q-head said halt there (False after the puzzle halted). ``trace`` (M, cap, L):
    the prediction after every step, when asked for. ``act_steps``: batch steps run.
    """

    preds: Tensor
    q_halt: Tensor
    steps: Tensor
    outputs: dict[str, Tensor]
    correct_at: Tensor
    halts_at: Tensor
    trace: Tensor | None
    act_steps: int


def q_says_halt(outputs: dict[str, Tensor], q_continue: bool) -> Tensor:
    """(B,) bool: the Q-head's halting decision, the training rule of :class:`rrcore.act.ACTModel`."""
    q_halt = outputs["q_halt_logits"]
    if q_continue:
        return q_halt > outputs["q_continue_logits"]
    return q_halt > 0


class TrajectoryNoise:
    """Gaussian noise on the latent of the trajectories of each puzzle in :func:`run_pool`.

    The pool holds ``trajectories`` consecutive rows per puzzle (row i is trajectory
    i % K); trajectory 0 stays noiseless. Called between ACT steps, outside the
    (compiled) step: it starts the halted rows on their new puzzle as the step would
    (:meth:`rrcore.act.ACTModel.load_halted`), adds ``std`` x N(0, 1) to the chosen
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
    def from_settings(cls, loss_head: torch.nn.Module, settings: EvalConfig) -> TrajectoryNoise | None:
        """The noise ``[eval]`` asks for (None without trajectories), seeded with ``settings.seed``."""
        if settings.trajectories == 1:
            return None
        model = getattr(loss_head, "model", None)
        if not hasattr(model, "load_halted"):
            from rrcore.config import ConfigError

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
            scale = (noisy * self.std).to(state.dtype).view(-1, *([1] * (state.ndim - 1)))
            inner[name] = state + scale * draw
        return carry._replace(inner=inner, halted=torch.zeros_like(carry.halted))

    def _names(self, inner: dict[str, Tensor]) -> tuple[str, ...]:
        if not self.states:
            return tuple(name for name, state in inner.items() if state.is_floating_point())
        unknown = [name for name in self.states if name not in inner]
        if unknown:
            from rrcore.config import ConfigError

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
    :class:`~rrcore.act.CompiledStep`); ``loss_head`` supplies the initial carry.
    ``noise`` perturbs the latent between steps (the pool's rows its trajectories).
    """
    work = _PoolWork.start(
        pool,
        max_steps=max_steps,
        adaptive=adaptive,
        q_continue=q_continue,
        trace=trace,
        keep_outputs=tuple(keep_outputs),
    )
    slots = torch.arange(batch_size, device=work.device)
    carry = loss_head.initial_carry(work.batch_for(slots))  # every row halted: the first step loads
    cursor = torch.zeros((), dtype=torch.long, device=work.device)
    finished = torch.zeros((), dtype=torch.long, device=work.device)
    act_steps = 0
    # Past every puzzle of the pool run one after another to the cap, more steps are waste.
    steps_between_looks = min(sync_every, work.count * max_steps + 1)
    while True:
        for _ in range(steps_between_looks):
            index, cursor = _refill(carry, cursor)
            batch = work.batch_for(index)
            if noise is not None:
                carry = noise(carry, batch)
            carry, _, _, outputs, _ = step(carry, batch)
            act_steps += 1
            carry, newly_finished = work.record(carry, outputs)
            finished = finished + newly_finished
        if int(finished) >= work.count:  # the only host look at the device, every sync_every steps
            break
    return work.result(act_steps)


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
        cls,
        pool: Batch,
        *,
        max_steps: int,
        adaptive: bool,
        q_continue: bool,
        trace: bool,
        keep_outputs: tuple[str, ...],
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

    def record(self, carry: Any, outputs: dict[str, Tensor]) -> tuple[Any, Tensor]:
        """Score the step just run, decide which rows halt, keep the answers of those that
        did; returns the carry with that decision and how many puzzles finished (on the device)."""
        index = carry.current_data["index"]
        live = index < self.count
        prediction = outputs["preds"] if "preds" in outputs else outputs["logits"].argmax(-1)
        says_halt = q_says_halt(outputs, self.q_continue)
        self._score_step(carry, index.clamp(max=self.count), prediction, says_halt)
        halted = (carry.steps >= self.max_steps) | ~live
        if self.adaptive:
            halted = halted | says_halt
        carry = carry._replace(halted=halted)
        done = torch.where(halted & live, index, self.count)  # the others write to the dropped row
        self._keep_answers(done, prediction, outputs, carry.steps)
        return carry, (halted & live).sum()

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

    def result(self, act_steps: int) -> PoolResult:
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


def task_for(registry: Any, data_section: Any, metadata: Any) -> PuzzleTask | None:
    """The data set's :class:`~rrcore.protocols.PuzzleTask` (``rr_register_tasks``), or None
    when its plugin registers none. A failing factory raises naming the plugin."""
    from rrcore.run import build

    spec = registry.find("task", data_section.plugin)
    return build(spec, data_section.config, metadata) if spec is not None else None


# -- the step table ------------------------------------------------------------------------


def step_table(
    correct_at: Tensor, halts_at: Tensor, steps: Tensor, correct: Tensor, valid: Tensor, adaptive: bool
) -> dict[str, Any]:
    """Per-step figures as sums over puzzles (summed over ranks by the caller).

    Fixed halting scores every puzzle at every step k up to the cap, from this one pass
    (``correct``), and also what adaptive halting with cap k would have given: each
    puzzle stops at its first Q-halt or at k (``adaptive_correct``, ``adaptive_steps``).
    Adaptive halting reports how many puzzles stopped at each step and how many of
    those were right (``halted``, ``halted_correct``).
    """
    valid = valid.bool()
    cap = correct_at.shape[1]
    table: dict[str, Any] = {"count": valid.sum().double()}
    if adaptive:
        stopped = torch.nn.functional.one_hot((steps.long() - 1).clamp(0, cap - 1), cap) * valid[:, None]
        table["halted"] = stopped.sum(0).double()
        table["halted_correct"] = (stopped * correct[:, None]).sum(0).double()
        return table
    table["correct"] = (correct_at & valid[:, None]).sum(0).double()
    # First step at which the Q-head said halt (cap + 1 when it never did).
    k = torch.arange(1, cap + 1, device=correct_at.device)
    first_halt = torch.where(halts_at, k, cap + 1).amin(1)
    stop = torch.minimum(first_halt[:, None], k[None, :])  # (M, cap): stop step for cap k
    chosen = correct_at.gather(1, stop - 1)
    table["adaptive_correct"] = (chosen & valid[:, None]).sum(0).double()
    table["adaptive_steps"] = (stop * valid[:, None]).sum(0).double()
    return table


def finish_table(sums: dict[str, Tensor], adaptive: bool, training_cap: int) -> dict[str, Any]:
    """Turn :func:`step_table`'s sums into the JSON written to ``steps.json``."""
    count = max(float(sums["count"]), 1.0)
    cap = len(next(v for k, v in sums.items() if k != "count"))
    rows = []
    for k in range(cap):
        if adaptive:
            halted = float(sums["halted"][k])
            rows.append(
                {
                    "step": k + 1,
                    "halted": int(halted),
                    "halted_fraction": halted / count,
                    "accuracy_of_halted": float(sums["halted_correct"][k]) / halted if halted else None,
                }
            )
        else:
            rows.append(
                {
                    "step": k + 1,
                    "exact_accuracy": float(sums["correct"][k]) / count,
                    "adaptive_exact_accuracy": float(sums["adaptive_correct"][k]) / count,
                    "adaptive_mean_steps": float(sums["adaptive_steps"][k]) / count,
                }
            )
    return {
        "halting": "adaptive" if adaptive else "fixed",
        "training_cap": training_cap,
        "cap": cap,
        "puzzles": int(count),
        "steps": rows,
    }


def format_votes(results: dict[str, float]) -> str | None:
    """Test-time selection from :func:`finish_votes`' results as a table, one rule a row
    (None without it); accuracy@1's puzzles/s is the plain pass's (``eval/...``)."""
    if "vote/augmentations" not in results:
        return None
    copies = int(results.get("vote/copies", results["vote/augmentations"]))
    augmentations, trajectories = int(results["vote/augmentations"]), int(results.get("vote/trajectories", 1))
    made = [f"{augmentations} augmentations"] * bool(augmentations)
    if trajectories > 1:
        made.append(f"{trajectories} trajectories, noise std {results['vote/trajectory_noise']:g}")
    single = results["vote/single_exact_accuracy"]
    lines = [
        f"test-time selection over {copies} copies of each of {int(results.get('vote/puzzles', 0))} "
        f"puzzles ({' x '.join(made)}):",
        f"{'rule':<13}  {'exact':>7}  {'vs accuracy@1':>13}  {'puzzles/s':>10}",
        f"{'accuracy@1':<13}  {single:>7.2%}  {'':>13}  {results.get('eval/puzzles_per_second', 0.0):>10.1f}",
    ]
    speed = results.get("vote/puzzles_per_second", 0.0)
    for name, label in SELECTION_RULES.items():
        if f"vote/{name}_exact_accuracy" in results:
            value = results[f"vote/{name}_exact_accuracy"]
            gain = f"{100 * (value - single):+.2f} points"
            lines.append(f"{label:<13}  {value:>7.2%}  {gain:>13}  {speed:>10.1f}")
    if "vote/halt_first_exact_accuracy" not in results:
        lines.append("halt-first: adaptive halting only (under fixed halting every copy runs the cap: it is best Q)")
    lines.append(
        "oracle: any copy right, the ceiling of every rule; accuracy@1: copy 0, the plain puzzle without noise"
    )
    return "\n".join(lines)


def format_step_table(table: dict[str, Any]) -> str:
    """``steps.json`` as a text table (what ``rr eval`` prints)."""
    lines = []
    if table["halting"] == "fixed":
        lines.append(
            f"accuracy at each step (one pass over {table['puzzles']} puzzles; training cap "
            f"{table['training_cap']}); 'adaptive' = stop at the first Q-halt, cap = step"
        )
        lines.append(f"{'step':>4}  {'exact':>7}  {'adaptive':>8}  {'mean steps':>10}")
        for row in table["steps"]:
            lines.append(
                f"{row['step']:>4}  {row['exact_accuracy']:>7.2%}  {row['adaptive_exact_accuracy']:>8.2%}"
                f"  {row['adaptive_mean_steps']:>10.2f}"
            )
    else:
        lines.append(
            f"steps used by adaptive halting ({table['puzzles']} puzzles; cap {table['cap']}, "
            f"training cap {table['training_cap']})"
        )
        lines.append(f"{'step':>4}  {'halted':>7}  {'share':>7}  {'exact of those':>14}")
        for row in table["steps"]:
            share = row["halted_fraction"]
            accuracy = "-" if row["accuracy_of_halted"] is None else f"{row['accuracy_of_halted']:.2%}"
            lines.append(f"{row['step']:>4}  {row['halted']:>7}  {share:>7.2%}  {accuracy:>14}")
    return "\n".join(lines)


# -- evaluation through pools ------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """``module`` in eval mode within the block, back in the mode it was in afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def evaluate_split(
    loss_head: torch.nn.Module,
    data: Any,
    evaluators: list[tuple[str, Any]],
    settings: EvalConfig,
    *,
    halt_max_steps: int,
    q_continue: bool,
    step: StepFn | None = None,
    output_dir: Path | None = None,
    predictions: bool = False,
    trace: bool = False,
    task: PuzzleTask | None = None,
    rank: int = 0,
) -> dict[str, float]:
    """Evaluate ``data``'s split through :func:`run_pool`, then the evaluators.

    Returns the evaluators' results plus ``eval/exact_accuracy``, ``eval/mean_steps``, ``eval/puzzles_per_second``
    and ``eval/seconds`` (the ACT loop alone) and ``eval/max_steps``; with ``settings.selects``, :func:`finish_votes`'
    ``vote/...`` figures. On rank 0 writes ``steps.json`` (:func:`finish_table`, with those results) to ``output_dir``,
    and with ``predictions`` ``predictions.jsonl``: one row per puzzle
    (``index``, ``input``, ``prediction``, ``label``, ``correct``, ``steps``, ``q_halt``, and ``trace`` with
    ``trace``), decoded by ``task`` when given, else token lists.
    """
    _require_augmentations(settings, task)
    step = step or loss_head
    cap = settings.step_cap(halt_max_steps)
    adaptive = settings.halting == "adaptive"
    with eval_mode(loss_head):
        sums = _solve_split(
            step,
            loss_head,
            data,
            evaluators,
            settings,
            cap=cap,
            adaptive=adaptive,
            q_continue=q_continue,
            predictions=predictions,
            trace=trace,
            output_dir=output_dir,
        )
        votes = None
        if settings.selects:
            votes = select_over_copies(
                step, loss_head, data, task, settings, max_steps=cap, adaptive=adaptive, q_continue=q_continue
            )
        return _report_split(
            sums,
            votes,
            evaluators,
            settings,
            cap=cap,
            halt_max_steps=halt_max_steps,
            output_dir=output_dir,
            predictions=predictions,
            task=task,
            pad_id=data.metadata.pad_id,
            rank=rank,
        )


def _report_split(
    sums: Any,
    votes: tuple[Tensor, float] | None,
    evaluators: list[tuple[str, Any]],
    settings: EvalConfig,
    *,
    cap: int,
    halt_max_steps: int,
    output_dir: Path | None,
    predictions: bool,
    task: PuzzleTask | None,
    pad_id: int,
    rank: int,
) -> dict[str, float]:
    """Reduce a solved split over ranks (every rank joins the same collectives in the same
    order), then on rank 0 add the figures and write the files; other ranks return the
    evaluators' results."""
    results = _evaluator_results(evaluators)
    # Every rank joins the same collectives in the same order before rank 0 goes on alone.
    totals = all_reduce_sum(sums.totals)
    if votes is not None:
        votes = all_reduce_sum(votes[0]), votes[1]
    table = {k: all_reduce_sum(v) for k, v in sums.table.items()}
    gathered = gather_to_rank0(_concat(sums.rows)) if predictions else None
    if rank != 0:
        return results
    results.update(_split_figures(totals, sums.seconds, sums.act_steps, cap))
    if votes is not None:
        vote_sums, vote_seconds = votes
        results.update(finish_votes(vote_sums, settings, vote_seconds, adaptive=settings.halting == "adaptive"))
    if output_dir is not None:
        _write_split_files(
            Path(output_dir),
            finish_table(table, settings.halting == "adaptive", halt_max_steps),
            results,
            gathered,
            task,
            pad_id,
        )
    return results


def _require_augmentations(settings: EvalConfig, task: PuzzleTask | None) -> None:
    if settings.augmentations and not getattr(task, "augmentations", 0):
        from rrcore.config import ConfigError

        raise ConfigError(
            "eval.augmentations asks for test-time selection, but this data set's task "
            "plugin provides no augmentations (PuzzleTask.augment)"
        )


@attrs.define
class _SplitSums:
    """What the pools of a split add up to on this rank: ``totals`` (puzzles, exact,
    steps), :func:`step_table`'s sums, the ACT loop's seconds and batch steps, and the
    rows for ``predictions.jsonl`` when asked for."""

    totals: Tensor
    table: dict[str, Tensor] = attrs.Factory(dict)
    rows: list[dict[str, np.ndarray]] = attrs.Factory(list)
    seconds: float = 0.0
    act_steps: int = 0

    def add(self, group: list[Batch], pool: Batch, result: PoolResult, adaptive: bool, predictions: bool) -> None:
        """Count one solved pool (``group``: its evaluation batches)."""
        valid = torch.cat([b["valid"] for b in group])
        labels = pool["labels"]
        correct = ((result.preds == labels) | (labels == IGNORE_LABEL)).all(-1)
        self.totals += torch.stack([valid.sum(), (correct & valid).sum(), (result.steps * valid).sum()]).double()
        for key, value in step_table(
            result.correct_at, result.halts_at, result.steps, correct, valid, adaptive
        ).items():
            self.table[key] = self.table[key] + value if key in self.table else value
        if predictions:
            self.rows.append(_prediction_rows(torch.cat([b["index"] for b in group]), valid, pool, result, correct))


def _solve_split(
    step: StepFn,
    loss_head: torch.nn.Module,
    data: Any,
    evaluators: list[tuple[str, Any]],
    settings: EvalConfig,
    *,
    cap: int,
    adaptive: bool,
    q_continue: bool,
    predictions: bool,
    trace: bool,
    output_dir: Path | None,
) -> _SplitSums:
    """Start the evaluators' pass, run every pool of the split, timing the ACT loop alone,
    and feed the evaluators."""
    for name, evaluator in evaluators:
        evaluator.begin_eval(Path(output_dir) / name)
    keep = sorted(set().union(*(getattr(e, "required_outputs", set()) for _, e in evaluators)) - {"preds"})
    device = next(iter(loss_head.parameters())).device
    sums = _SplitSums(torch.zeros(3, dtype=torch.float64, device=device))
    for group in pools(data.eval_batches(), data.metadata.seq_len, cap, trace):
        pool = {k: torch.cat([b[k] for b in group]) for k in ("inputs", "labels", "puzzle_identifiers")}
        _sync(device)
        started = time.perf_counter()
        result = run_pool(
            step,
            loss_head,
            pool,
            batch_size=group[0]["inputs"].shape[0],
            max_steps=cap,
            adaptive=adaptive,
            q_continue=q_continue,
            sync_every=settings.sync_every,
            trace=trace,
            keep_outputs=keep,
        )
        _sync(device)
        sums.seconds += time.perf_counter() - started
        sums.act_steps += result.act_steps
        _update_evaluators(evaluators, group, result)
        sums.add(group, pool, result, adaptive, predictions)
    return sums


def _update_evaluators(evaluators: list[tuple[str, Any]], group: list[Batch], result: PoolResult) -> None:
    """Hand each evaluation batch of a pool its rows of the pool's answers."""
    offset = 0
    for batch in group:
        size = batch["inputs"].shape[0]
        outputs = {
            "preds": result.preds[offset : offset + size],
            "q_halt_logits": result.q_halt[offset : offset + size],
            **{k: v[offset : offset + size] for k, v in result.outputs.items()},
        }
        for _, evaluator in evaluators:
            evaluator.update_batch(batch, outputs)
        offset += size


def _evaluator_results(evaluators: list[tuple[str, Any]]) -> dict[str, float]:
    results: dict[str, float] = {}
    for name, evaluator in evaluators:
        values = evaluator.result()
        if values:
            results.update({f"{name}/{k}": float(v) for k, v in values.items()})
    return results


def _split_figures(totals: Tensor, seconds: float, act_steps: int, cap: int) -> dict[str, float]:
    """The ``eval/...`` results from the totals summed over ranks."""
    puzzles, exact, steps = totals.tolist()
    return {
        "eval/exact_accuracy": exact / max(puzzles, 1.0),
        "eval/mean_steps": steps / max(puzzles, 1.0),
        "eval/puzzles_per_second": puzzles / seconds if seconds else 0.0,
        "eval/seconds": seconds,
        "eval/max_steps": float(cap),
        "eval/act_steps": float(act_steps),
    }


def _write_split_files(
    output_dir: Path,
    summary: dict[str, Any],
    results: dict[str, float],
    gathered: list[dict[str, np.ndarray]] | None,
    task: PuzzleTask | None,
    pad_id: int,
) -> None:
    """``steps.json`` (the step table with the ``eval/...`` results) and, when gathered,
    ``predictions.jsonl``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    summary["results"] = {k: v for k, v in results.items() if k.startswith(("eval/", "vote/"))}
    (output_dir / "steps.json").write_text(json.dumps(summary, indent=2) + "\n")
    if gathered is not None:
        write_predictions(output_dir / "predictions.jsonl", gathered, task, pad_id)


def _prediction_rows(
    index: Tensor, valid: Tensor, pool: Batch, result: PoolResult, correct: Tensor
) -> dict[str, np.ndarray]:
    """One pool's valid puzzles as host arrays for ``predictions.jsonl``."""
    keep = valid.bool()
    rows = {
        "index": index[keep],
        "inputs": pool["inputs"][keep],
        "labels": pool["labels"][keep],
        "preds": result.preds[keep],
        "correct": correct[keep],
        "steps": result.steps[keep],
        "q_halt": result.q_halt[keep],
    }
    if result.trace is not None:
        rows["trace"] = result.trace[keep]
    return {k: v.cpu().numpy() for k, v in rows.items()}


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def write_predictions(
    path: Path, gathered: list[dict[str, np.ndarray]], task: PuzzleTask | None, pad_id: int = 0
) -> None:
    """``predictions.jsonl`` from every rank's rows, in split order (see :func:`evaluate_split`);
    unscored label positions are shown as ``pad_id``."""
    parts = [part for part in gathered if part]
    rows = _concat(parts)
    order = np.argsort(rows["index"], kind="stable") if rows else []

    def show(tokens: np.ndarray) -> Any:
        return task.decode(tokens) if task is not None else tokens.tolist()

    with open(path, "w", encoding="utf-8") as handle:
        for i in order:
            label = np.where(rows["labels"][i] == IGNORE_LABEL, pad_id, rows["labels"][i])
            record = {
                "index": int(rows["index"][i]),
                "input": show(rows["inputs"][i]),
                "prediction": show(rows["preds"][i]),
                "label": show(label),
                "correct": bool(rows["correct"][i]),
                "steps": int(rows["steps"][i]),
                "q_halt": round(float(rows["q_halt"][i]), 4),
            }
            if "trace" in rows:
                record["trace"] = [show(t) for t in rows["trace"][i][: record["steps"]]]
            handle.write(json.dumps(record) + "\n")


# -- test-time selection over augmented copies and noisy trajectories --------------------------

VOTE_FIGURES = ("puzzles", "single", "majority", "best_q", "halt_first", "any")


@torch.no_grad()
def select_over_copies(
    step: StepFn,
    loss_head: torch.nn.Module,
    data: Any,
    task: PuzzleTask | None,
    settings: EvalConfig,
    *,
    max_steps: int,
    adaptive: bool,
    q_continue: bool = False,
) -> tuple[Tensor, float]:
    """Solve :attr:`EvalConfig.copies` copies of every puzzle: ``settings.augmentations``
    augmented copies (copy 0 the puzzle itself; needs ``task``), each run
    ``settings.trajectories`` times with :class:`TrajectoryNoise` (trajectory 0 noiseless);
    map the answers back with the task's inverse and select one.

    Returns sums over this rank's puzzles in the order of :data:`VOTE_FIGURES` (see
    :func:`select`) and the seconds the ACT loop took.
    """
    copies = settings.copies
    rng = np.random.default_rng(settings.seed)
    noise = TrajectoryNoise.from_settings(loss_head, settings)
    device = next(iter(loss_head.parameters())).device
    sums = torch.zeros(len(VOTE_FIGURES), dtype=torch.float64, device=device)
    seconds = 0.0
    for group in pools(data.eval_batches(), data.metadata.seq_len, max_steps, False, copies=copies):
        valid = torch.cat([b["valid"] for b in group]).bool()
        inputs = torch.cat([b["inputs"] for b in group])[valid]
        labels = torch.cat([b["labels"] for b in group])[valid]
        identifiers = torch.cat([b["puzzle_identifiers"] for b in group])[valid]
        copied, state = _copies(inputs, task, settings, rng)
        pool = {
            "inputs": copied,
            "labels": torch.full_like(copied, IGNORE_LABEL, dtype=torch.long),
            "puzzle_identifiers": identifiers.repeat_interleave(copies),
        }
        _sync(device)
        started = time.perf_counter()
        result = run_pool(
            step,
            loss_head,
            pool,
            batch_size=group[0]["inputs"].shape[0],
            max_steps=max_steps,
            adaptive=adaptive,
            q_continue=q_continue,
            sync_every=settings.sync_every,
            noise=noise,
        )
        _sync(device)
        seconds += time.perf_counter() - started
        puzzles = inputs.shape[0]
        steps = result.steps.view(puzzles, copies) if adaptive else None
        sums += select(
            _answers(result.preds, task, state, settings), result.q_halt.view(puzzles, copies), labels, steps
        )
    return sums, seconds


def _copies(
    inputs: Tensor, task: PuzzleTask | None, settings: EvalConfig, rng: np.random.Generator
) -> tuple[Tensor, Any]:
    """The selection pool's rows for puzzles ``inputs`` (N, L): (N * copies, L), each puzzle's
    augmented copies in turn and each copy's trajectories in turn (as :class:`TrajectoryNoise`
    counts them); and the task's state for inverting the augmentations (None without)."""
    state = None
    if settings.augmentations:
        augmented, state = task.augment(inputs.cpu().numpy(), settings.augmentations, rng)
        shape = (inputs.shape[0] * settings.augmentations, inputs.shape[1])
        inputs = torch.as_tensor(np.asarray(augmented).reshape(shape), device=inputs.device).to(inputs.dtype)
    return inputs.repeat_interleave(settings.trajectories, 0), state


def _answers(preds: Tensor, task: PuzzleTask | None, state: Any, settings: EvalConfig) -> Tensor:
    """The selection pool's answers (N * copies, L) as (N, copies, L), mapped back to the
    puzzle; copy ``a * K + k`` is augmentation a's trajectory k."""
    augmentations, trajectories = max(settings.augmentations, 1), settings.trajectories
    answers = preds.long().view(-1, augmentations, trajectories, preds.shape[-1])
    if settings.augmentations:
        host = answers.cpu().numpy()
        inverted = [np.asarray(task.invert(np.ascontiguousarray(host[:, :, k]), state)) for k in range(trajectories)]
        answers = torch.as_tensor(np.stack(inverted, axis=2), device=preds.device).long()
    return answers.reshape(answers.shape[0], augmentations * trajectories, -1)


def select(answers: Tensor, q_halt: Tensor, labels: Tensor, steps: Tensor | None = None, rows: int = 4096) -> Tensor:
    """:data:`VOTE_FIGURES` sums for answers (N, copies, L) with their Q-halt (N, copies)
    against ``labels`` (N, L), in chunks of ``rows`` puzzles (the vote compares every pair).

    The figures: puzzles; exactly right with copy 0 (the plain puzzle, noiseless:
    accuracy@1); with the majority answer (ties broken by Q-halt); with the most confident
    copy's (best Q-halt); with the copy that halted first by ``steps`` (N, copies), ties
    by Q-halt (without ``steps``, as under fixed halting where every copy runs the cap:
    best Q); and with any copy (the oracle: the ceiling a selector could reach).
    """
    sums = torch.zeros(len(VOTE_FIGURES), dtype=torch.float64, device=answers.device)
    for start in range(0, answers.shape[0], rows):
        chunk, q, label = (
            answers[start : start + rows],
            q_halt[start : start + rows].float(),
            labels[start : start + rows],
        )
        right = ((chunk == label[:, None]) | (label[:, None] == IGNORE_LABEL)).all(-1)  # (n, copies)
        agree = (chunk[:, :, None] == chunk[:, None, :]).all(-1).sum(-1)  # (n, copies)
        # Votes are whole numbers; sigmoid(q) / 2 < 1 only breaks ties.
        majority = (agree + torch.sigmoid(q) / 2).argmax(1, keepdim=True)
        best_q = q.argmax(1, keepdim=True)
        halt_first = best_q
        if steps is not None:
            used = steps[start : start + rows]
            first = used == used.min(1, keepdim=True).values
            halt_first = torch.where(first, q, -torch.inf).argmax(1, keepdim=True)
        sums += torch.stack(
            [
                torch.tensor(float(chunk.shape[0]), device=sums.device),
                right[:, 0].sum(),
                right.gather(1, majority).sum(),
                right.gather(1, best_q).sum(),
                right.gather(1, halt_first).sum(),
                right.any(1).sum(),
            ]
        ).double()
    return sums


SELECTION_RULES = {"majority": "majority vote", "best_q": "best Q", "halt_first": "halt-first", "any": "oracle"}
"""The ``vote/<rule>_exact_accuracy`` figures beside accuracy@1 and how ``rr eval`` names them."""


def finish_votes(sums: Tensor, settings: EvalConfig, seconds: float, adaptive: bool) -> dict[str, float]:
    """``vote/...`` results: the copies run, the accuracy of accuracy@1 and of each rule of
    :data:`SELECTION_RULES` with its gain over accuracy@1, and the selection pass's
    puzzles/s (each original puzzle counted once; the ACT loop alone, as ``eval/...``).
    Halt-first only under adaptive halting: with fixed halting it is best Q."""
    values = dict(zip(VOTE_FIGURES, sums.tolist()))
    puzzles = max(values["puzzles"], 1.0)
    single = values["single"] / puzzles
    out = {
        "vote/puzzles": values["puzzles"],
        "vote/augmentations": float(settings.augmentations),
        "vote/trajectories": float(settings.trajectories),
        "vote/trajectory_noise": float(settings.trajectory_noise),
        "vote/copies": float(settings.copies),
        "vote/puzzles_per_second": values["puzzles"] / seconds if seconds else 0.0,
        "vote/seconds": seconds,
        "vote/single_exact_accuracy": single,
    }
    for name in SELECTION_RULES:
        if name != "halt_first" or adaptive:
            out[f"vote/{name}_exact_accuracy"] = values[name] / puzzles
            out[f"vote/{name}_gain"] = out[f"vote/{name}_exact_accuracy"] - single
    return out
