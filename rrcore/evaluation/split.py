"""Evaluating a split: its pools through :func:`~rrcore.evaluation.pool.run_pool`, the
evaluators fed, the sums reduced over ranks, the ``eval/...`` figures and files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch
from torch import Tensor

from rrcore.base.distributed import all_reduce_sum, gather_to_rank0
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.registry import build
from rrcore.data.format import IGNORE_LABEL
from rrcore.evaluation.pool import TrajectoryNoise, pools, run_pool
from rrcore.evaluation.selection import VOTE_FIGURES, finish_votes, select, selection_answers, selection_rows
from rrcore.evaluation.tables import concat_rows, finish_table, prediction_rows, step_table, write_split_files

if TYPE_CHECKING:
    from rrcore.contracts.experiment import EvalConfig
    from rrcore.contracts.protocols import Batch, PuzzleTask
    from rrcore.evaluation.pool import PoolResult, StepFn


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
    """Evaluate ``data``'s split through :func:`~rrcore.evaluation.pool.run_pool`, then the
    evaluators (each told to write under ``output_dir / <its name>``).

    Returns the evaluators' results plus ``eval/exact_accuracy``, ``eval/mean_steps``,
    ``eval/puzzles_per_second`` and ``eval/seconds`` (the ACT loop alone), ``eval/max_steps``
    and ``eval/act_steps``; with ``settings.selects``, the ``vote/...`` figures of
    :func:`~rrcore.evaluation.selection.finish_votes`. On rank 0 writes ``steps.json`` to
    ``output_dir`` and, with ``predictions``, ``predictions.jsonl`` (with each step's
    prediction when ``trace``; see :func:`~rrcore.evaluation.tables.write_predictions`).
    """
    if settings.augmentations and not getattr(task, "augmentations", 0):
        raise ConfigError(
            "eval.augmentations asks for test-time selection, but this data set's task "
            "plugin provides no augmentations (PuzzleTask.augment)"
        )
    step = step or loss_head
    cap = settings.step_cap(halt_max_steps)
    adaptive = settings.halting == "adaptive"
    with eval_mode(loss_head):
        for name, evaluator in evaluators:
            evaluator.begin_eval(Path(output_dir) / name)
        sums = _solve_split(step, loss_head, data, evaluators, settings, cap, adaptive, q_continue, predictions, trace)
        votes = None
        if settings.selects:
            votes = select_over_copies(
                step, loss_head, data, task, settings, max_steps=cap, adaptive=adaptive, q_continue=q_continue
            )
        results = {
            f"{name}/{k}": float(v) for name, evaluator in evaluators for k, v in (evaluator.result() or {}).items()
        }
    # Every rank joins the same collectives in the same order before rank 0 goes on alone.
    totals = all_reduce_sum(sums.totals)
    if votes is not None:
        votes = all_reduce_sum(votes[0]), votes[1]
    table = {k: all_reduce_sum(v) for k, v in sums.table.items()}
    gathered = gather_to_rank0(concat_rows(sums.rows)) if predictions else None
    if rank != 0:
        return results
    results.update(_split_figures(totals, sums.seconds, sums.act_steps, cap))
    if votes is not None:
        results.update(finish_votes(votes[0], settings, votes[1], adaptive=adaptive))
    if output_dir is not None:
        summary = finish_table(table, adaptive, halt_max_steps)
        write_split_files(Path(output_dir), summary, results, gathered, task, data.metadata.pad_id)
    return results


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
    ``settings.trajectories`` times with :class:`~rrcore.evaluation.pool.TrajectoryNoise`
    (trajectory 0 noiseless); map the answers back with the task's inverse and select one.

    Returns sums over this rank's puzzles in the order of ``VOTE_FIGURES`` (see
    :func:`~rrcore.evaluation.selection.select`) and the seconds the ACT loop took.
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
        copied, state = selection_rows(inputs, task, settings, rng)
        pool = {
            "inputs": copied,
            "labels": torch.full_like(copied, IGNORE_LABEL, dtype=torch.long),
            "puzzle_identifiers": identifiers.repeat_interleave(copies),
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
            noise=noise,
        )
        seconds += result.seconds
        puzzles = inputs.shape[0]
        steps = result.steps.view(puzzles, copies) if adaptive else None
        sums += select(
            selection_answers(result.preds, task, state, settings), result.q_halt.view(puzzles, copies), labels, steps
        )
    return sums, seconds


@attrs.define
class _SplitSums:
    """What the pools of a split add up to on this rank: ``totals`` (puzzles, exact,
    steps), :func:`~rrcore.evaluation.tables.step_table`'s sums, the ACT loop's seconds
    and batch steps, and the rows for ``predictions.jsonl`` when asked for."""

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
        self.seconds += result.seconds
        self.act_steps += result.act_steps
        if predictions:
            self.rows.append(prediction_rows(torch.cat([b["index"] for b in group]), valid, pool, result, correct))


def _solve_split(
    step: StepFn,
    loss_head: torch.nn.Module,
    data: Any,
    evaluators: list[tuple[str, Any]],
    settings: EvalConfig,
    cap: int,
    adaptive: bool,
    q_continue: bool,
    predictions: bool,
    trace: bool,
) -> _SplitSums:
    """Run every pool of the split, feed the evaluators and add up the pools."""
    keep = sorted(set().union(*(getattr(e, "required_outputs", set()) for _, e in evaluators)) - {"preds"})
    device = next(iter(loss_head.parameters())).device
    sums = _SplitSums(torch.zeros(3, dtype=torch.float64, device=device))
    for group in pools(data.eval_batches(), data.metadata.seq_len, cap, trace):
        pool = {k: torch.cat([b[k] for b in group]) for k in ("inputs", "labels", "puzzle_identifiers")}
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


def task_for(registry: Any, data_section: Any, metadata: Any) -> PuzzleTask | None:
    """The data set's :class:`~rrcore.contracts.protocols.PuzzleTask` (``rr_register_tasks``), or None
    when its plugin registers none. A failing factory raises naming the plugin."""
    spec = registry.find("task", data_section.plugin)
    return build(spec, data_section.config, metadata) if spec is not None else None
