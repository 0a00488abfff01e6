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
from rrcore.validators import at_least, non_negative

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

    Left at the defaults, evaluation during training is the papers' batched loop;
    ``rr eval`` always runs through :func:`evaluate_split` and reports more.
    """

    halting: Literal["fixed", "adaptive"] = "fixed"
    max_steps: int = attrs.field(default=0, validator=non_negative)
    sync_every: int = attrs.field(default=8, validator=at_least(1))
    augmentations: int = attrs.field(default=0, validator=non_negative)
    seed: int = attrs.field(default=0, validator=non_negative)

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
) -> PoolResult:
    """Solve every puzzle of ``pool`` (``inputs``, ``labels``, ``puzzle_identifiers``,
    each with M rows) with ``batch_size`` slots; see the module doc.

    ``step(carry, batch)`` runs one ACT step like the loss head (pass the compiled
    :class:`~rrcore.act.CompiledStep`); ``loss_head`` supplies the initial carry.
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
    while True:
        for _ in range(sync_every):
            index, cursor = _refill(carry, cursor)
            carry, _, _, outputs, _ = step(carry, work.batch_for(index))
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

    spec = registry.components.get("task", {}).get(data_section.plugin)
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
    """One line on test-time selection from :func:`finish_votes`' results (None without it)."""
    if "vote/augmentations" not in results:
        return None
    single = results["vote/single_exact_accuracy"]
    parts = [f"accuracy@1 {single:.2%}"]
    for name, label in (("majority", "majority vote"), ("best_q", "best Q")):
        value = results[f"vote/{name}_exact_accuracy"]
        parts.append(f"{label} {value:.2%} ({100 * (value - single):+.2f} points)")
    parts.append(f"any copy right {results['vote/any_exact_accuracy']:.2%}")
    return f"test-time selection over {int(results['vote/augmentations'])} augmentations: " + ", ".join(parts)


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
    and ``eval/seconds`` (the ACT loop alone) and ``eval/max_steps``; with ``settings.augmentations`` and a ``task``
    that can augment, the ``vote/...`` figures of :func:`vote_over_augmentations`. On rank 0 writes ``steps.json``
    (:func:`finish_table`) to ``output_dir``, and with ``predictions`` ``predictions.jsonl``: one row per puzzle
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
        if settings.augmentations:
            votes = vote_over_augmentations(
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
    votes: Tensor | None,
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
    if settings.augmentations:
        votes = all_reduce_sum(votes)
    table = {k: all_reduce_sum(v) for k, v in sums.table.items()}
    gathered = gather_to_rank0(_concat(sums.rows)) if predictions else None
    if rank != 0:
        return results
    results.update(_split_figures(totals, sums.seconds, sums.act_steps, cap))
    if settings.augmentations:
        results.update(finish_votes(votes, settings.augmentations))
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
    summary["results"] = {k: v for k, v in results.items() if k.startswith("eval/")}
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


# -- test-time selection over augmentations ---------------------------------------------------

VOTE_FIGURES = ("puzzles", "single", "majority", "best_q", "any")


@torch.no_grad()
def vote_over_augmentations(
    step: StepFn,
    loss_head: torch.nn.Module,
    data: Any,
    task: PuzzleTask,
    settings: EvalConfig,
    *,
    max_steps: int,
    adaptive: bool,
    q_continue: bool = False,
) -> Tensor:
    """Solve ``settings.augmentations`` augmented copies of every puzzle (copy 0 the
    puzzle itself), map the answers back with the task's inverse and select one.

    Returns sums over this rank's puzzles, in the order of :data:`VOTE_FIGURES`: puzzles,
    exactly right with the plain puzzle (accuracy@1), with the majority answer (ties
    broken by Q-halt), with the answer of the most confident copy (best Q-halt), and
    with any copy (the ceiling a selector could reach).
    """
    count = settings.augmentations
    rng = np.random.default_rng(settings.seed)
    device = next(iter(loss_head.parameters())).device
    sums = torch.zeros(len(VOTE_FIGURES), dtype=torch.float64, device=device)
    seq_len = data.metadata.seq_len
    for group in pools(data.eval_batches(), seq_len, max_steps, False, copies=count):
        valid = torch.cat([b["valid"] for b in group]).bool()
        inputs = torch.cat([b["inputs"] for b in group])[valid]
        labels = torch.cat([b["labels"] for b in group])[valid]
        identifiers = torch.cat([b["puzzle_identifiers"] for b in group])[valid]
        puzzles = inputs.shape[0]
        augmented, state = task.augment(inputs.cpu().numpy(), count, rng)
        augmented = torch.as_tensor(np.asarray(augmented).reshape(puzzles * count, seq_len), device=device)
        pool = {
            "inputs": augmented.to(inputs.dtype),
            "labels": torch.full_like(augmented, IGNORE_LABEL, dtype=torch.long),
            "puzzle_identifiers": identifiers.repeat_interleave(count),
        }
        result = run_pool(
            step,
            loss_head,
            pool,
            batch_size=group[0]["inputs"].shape[0],
            max_steps=max_steps,
            adaptive=adaptive,
            q_continue=q_continue,
            sync_every=settings.sync_every,
        )
        answers = task.invert(result.preds.cpu().numpy().reshape(puzzles, count, seq_len), state)
        answers = torch.as_tensor(np.asarray(answers), device=device).long()  # (N, count, L)
        q_halt = result.q_halt.view(puzzles, count)
        sums += select(answers, q_halt, labels)
    return sums


def select(answers: Tensor, q_halt: Tensor, labels: Tensor, rows: int = 4096) -> Tensor:
    """:data:`VOTE_FIGURES` sums for answers (N, count, L) with their Q-halt (N, count)
    against ``labels`` (N, L); in chunks of ``rows`` puzzles (the vote compares every pair)."""
    sums = torch.zeros(len(VOTE_FIGURES), dtype=torch.float64, device=answers.device)
    for start in range(0, answers.shape[0], rows):
        chunk, q, label = answers[start : start + rows], q_halt[start : start + rows], labels[start : start + rows]
        right = ((chunk == label[:, None]) | (label[:, None] == IGNORE_LABEL)).all(-1)  # (n, count)
        agree = (chunk[:, :, None] == chunk[:, None, :]).all(-1).sum(-1)  # (n, count)
        # Votes are whole numbers; sigmoid(q) / 2 < 1 only breaks ties.
        majority = (agree + torch.sigmoid(q.float()) / 2).argmax(1, keepdim=True)
        best_q = q.argmax(1, keepdim=True)
        sums += torch.stack(
            [
                torch.tensor(float(chunk.shape[0]), device=sums.device),
                right[:, 0].sum(),
                right.gather(1, majority).sum(),
                right.gather(1, best_q).sum(),
                right.any(1).sum(),
            ]
        ).double()
    return sums


def finish_votes(sums: Tensor, augmentations: int) -> dict[str, float]:
    """``vote/...`` results: accuracy of each selector and its gain over accuracy@1."""
    values = dict(zip(VOTE_FIGURES, sums.tolist()))
    puzzles = max(values["puzzles"], 1.0)
    single = values["single"] / puzzles
    out = {"vote/augmentations": float(augmentations), "vote/single_exact_accuracy": single}
    for name in ("majority", "best_q", "any"):
        out[f"vote/{name}_exact_accuracy"] = values[name] / puzzles
    out["vote/majority_gain"] = out["vote/majority_exact_accuracy"] - single
    out["vote/best_q_gain"] = out["vote/best_q_exact_accuracy"] - single
    return out
