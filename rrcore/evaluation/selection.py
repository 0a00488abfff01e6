"""Test-time selection: the copies of each puzzle (augmentations, noisy trajectories) that
:func:`rrcore.evaluation.split.select_over_copies` solves, one answer selected per puzzle
by each rule, the ``vote/...`` figures and the table of the rules ``rr eval`` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from rrcore.data.format import IGNORE_LABEL

if TYPE_CHECKING:
    from rrcore.contracts.experiment import EvalConfig
    from rrcore.contracts.protocols import PuzzleTask

VOTE_FIGURES = ("puzzles", "single", "majority", "best_q", "halt_first", "any")

SELECTION_RULES = {"majority": "majority vote", "best_q": "best Q", "halt_first": "halt-first", "any": "oracle"}
"""The ``vote/<rule>_exact_accuracy`` figures beside accuracy@1 and how ``rr eval`` names them."""


def selection_rows(
    inputs: Tensor, task: PuzzleTask | None, settings: EvalConfig, rng: np.random.Generator
) -> tuple[Tensor, Any]:
    """The selection pool's rows for puzzles ``inputs`` (N, L): (N * copies, L), each puzzle's
    augmented copies in turn and each copy's trajectories in turn (as :class:`~rrcore.evaluation.pool.TrajectoryNoise`
    counts them); and the task's state for inverting the augmentations (None without)."""
    state = None
    if settings.augmentations:
        augmented, state = task.augment(inputs.cpu().numpy(), settings.augmentations, rng)
        shape = (inputs.shape[0] * settings.augmentations, inputs.shape[1])
        inputs = torch.as_tensor(np.asarray(augmented).reshape(shape), device=inputs.device).to(inputs.dtype)
    return inputs.repeat_interleave(settings.trajectories, 0), state


def selection_answers(preds: Tensor, task: PuzzleTask | None, state: Any, settings: EvalConfig) -> Tensor:
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
