"""What evaluation writes and prints: the step table (``steps.json``) and ``predictions.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from rrcore.data.format import IGNORE_LABEL

if TYPE_CHECKING:
    from rrcore.contracts.protocols import Batch, PuzzleTask
    from rrcore.evaluation.pool import PoolResult


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


def write_split_files(
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


def prediction_rows(
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


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """:func:`prediction_rows` of several pools as one set of arrays."""
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def write_predictions(
    path: Path, gathered: list[dict[str, np.ndarray]], task: PuzzleTask | None, pad_id: int = 0
) -> None:
    """``predictions.jsonl`` from every rank's rows (:func:`prediction_rows`), in split order:
    one line per puzzle with ``index``, ``input``, ``prediction``, ``label`` (unscored
    positions shown as ``pad_id``), ``correct``, ``steps``, ``q_halt`` and, when traced,
    ``trace``; decoded by ``task`` when given, else token lists."""
    parts = [part for part in gathered if part]
    rows = concat_rows(parts)
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
