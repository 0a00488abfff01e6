"""``rr bench --largest-batch``: training examples/s at the largest global batch that fits.

Starting from the experiment's batch, the global batch is doubled while it fits on the GPU,
each size timed by ``rr bench`` in a process of its own: a process that ran out of memory
leaves nothing behind for the next size, and the one before it holds no cached memory.
A size "does not fit" when its process ends with CUDA's out-of-memory error; any other
failure stops the search with that process's last error line.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

KEPT = ("global_batch_size", "step_ms", "train_examples_per_second", "peak_memory_gib")
OUT_OF_MEMORY = ("OutOfMemoryError", "CUDA out of memory")


class BatchSearchError(RuntimeError):
    """A size failed for a reason other than memory."""


def largest_batch(try_batch: Callable[[int], dict[str, Any] | None], start: int, limit: int) -> dict[str, Any]:
    """Double the global batch from ``start`` (measured already) up to ``limit`` while
    ``try_batch(size)`` returns figures (None: it did not fit). Returns every size tried
    and the largest that fit."""
    tried: list[dict[str, Any]] = []
    size = 2 * start
    while size <= limit:
        figures = try_batch(size)
        if figures is None:
            tried.append({"global_batch_size": size, "fits": False})
            break
        tried.append({**{key: figures.get(key) for key in KEPT}, "fits": True})
        size *= 2
    fitting = [row for row in tried if row["fits"]]
    return {
        "larger_batches": tried,
        "largest_batch_tried_fits": bool(tried) and tried[-1]["fits"],
        "largest_fitting_batch": fitting[-1]["global_batch_size"] if fitting else start,
        "largest_fitting_batch_examples_per_second": fitting[-1]["train_examples_per_second"] if fitting else None,
    }


def bench_in_child(experiment: str, overrides: tuple[str, ...], steps: int, warmup: int) -> Callable[[int], Any]:
    """``try_batch`` for :func:`largest_batch`: ``rr bench EXPERIMENT`` at a given global batch
    in a new Python process (no evaluation); None when it ran out of GPU memory."""

    def try_batch(size: int) -> dict[str, Any] | None:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "figures.json"
            command = [sys.executable, "-m", "rrcore", "bench", experiment, "--steps", str(steps)]
            command += ["--warmup", str(warmup), "--eval-batches", "0", "--json-out", str(out)]
            for override in (*overrides, f"train.global_batch_size={size}"):
                command += ["--set", override]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode == 0:
                return json.loads(out.read_text())
        if any(mark in done.stderr for mark in OUT_OF_MEMORY):
            return None
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise BatchSearchError(
            f"rr bench at global batch {size} failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}"
        )

    return try_batch


def search(
    experiment: str, overrides: tuple[str, ...], start: int, steps: int, warmup: int, limit: int | None = None
) -> dict[str, Any]:
    """``rr bench --largest-batch`` after this process's own benchmark at ``start``: free the
    GPU memory it holds, then :func:`largest_batch` up to ``limit`` (default 16x ``start``),
    each size in a child process; the figures say how much memory this process still held."""
    torch._dynamo.reset()  # compiled steps hold their CUDA-graph memory pools
    gc.collect()
    held = {}
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        held["memory_held_during_search_gib"] = round(torch.cuda.memory_reserved() / 2**30, 2)
    found = largest_batch(bench_in_child(experiment, overrides, steps, warmup), start, limit or 16 * start)
    return {**found, **held}
