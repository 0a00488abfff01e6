"""``rr bench --largest-batch``: training examples/s at the largest global batch that fits.

The sizes searched are the experiment's batch times a power of two, up to a limit. Each is
timed by ``rr bench`` in a process of its own: a process that ran out of memory leaves
nothing behind for the next size, and the one before it holds no cached memory. A size "does
not fit" when its process ends with CUDA's out-of-memory error; any other failure stops the
search with that process's last error line.

Every size costs a compilation, so the search starts where memory says to: the experiment's
own peak memory scaled with the batch (an overestimate, as part of it does not grow with the
batch) picks the first size, the largest expected to fit in 90% of the GPU. From there it
doubles after a size that fits and halves the gap after one that does not.
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


def largest_batch(
    try_batch: Callable[[int], dict[str, Any] | None], start: int, limit: int, first: int = 1
) -> dict[str, Any]:
    """The largest ``start * 2**k`` up to ``limit`` for which ``try_batch(size)`` returns
    figures (None: it did not fit), ``start`` itself measured already. The first size tried is
    ``start * 2**first``; then the next power up after a size that fits, the middle of the gap
    after one that does not. Returns every size tried, in order, and the largest that fit."""
    top = max(limit // start, 1).bit_length() - 1  # the largest k within the limit
    fits_to, fails_from = 0, None  # exponents: the largest known to fit, the smallest known not to
    tried: list[dict[str, Any]] = []
    k = min(max(first, 1), top) if top else None
    while k is not None:
        figures = try_batch(start << k)
        if figures is None:
            tried.append({"global_batch_size": start << k, "fits": False})
            fails_from = k
        else:
            tried.append({**{key: figures.get(key) for key in KEPT}, "fits": True})
            fits_to = k
        k = _next_exponent(fits_to, fails_from, top)
    fitting = max((row for row in tried if row["fits"]), key=_size, default=None)
    return {
        "larger_batches": tried,
        "largest_batch_tried_fits": bool(tried) and max(tried, key=_size)["fits"],
        "largest_fitting_batch": fitting["global_batch_size"] if fitting else start,
        "largest_fitting_batch_examples_per_second": fitting["train_examples_per_second"] if fitting else None,
    }


def _size(row: dict[str, Any]) -> int:
    return row["global_batch_size"]


def _next_exponent(fits_to: int, fails_from: int | None, top: int) -> int | None:
    if fails_from is None:
        return fits_to + 1 if fits_to < top else None
    middle = (fits_to + fails_from) // 2
    return middle if middle > fits_to else None


def first_exponent(start: int, limit: int, peak_gib: float | None, capacity_gib: float | None) -> int:
    """The ``k`` of the first size :func:`largest_batch` tries: the largest ``start * 2**k``
    within ``limit`` whose memory, ``peak_gib`` at ``start`` scaled with the batch, stays
    within 90% of ``capacity_gib``; at least 1 (and 1 when either is unknown)."""
    k = 1
    if peak_gib and capacity_gib:
        while start << (k + 1) <= limit and peak_gib * 2 ** (k + 1) <= 0.9 * capacity_gib:
            k += 1
    return k


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
    experiment: str,
    overrides: tuple[str, ...],
    start: int,
    steps: int,
    warmup: int,
    limit: int | None = None,
    peak_gib: float | None = None,
) -> dict[str, Any]:
    """``rr bench --largest-batch`` after this process's own benchmark at ``start`` (its
    training peak ``peak_gib``): free the GPU memory it holds, then :func:`largest_batch` up
    to ``limit`` (default 16x ``start``), each size in a child process; the figures say how
    much memory this process still held."""
    torch._dynamo.reset()  # compiled steps hold their CUDA-graph memory pools
    gc.collect()
    held, capacity_gib = {}, None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        held["memory_held_during_search_gib"] = round(torch.cuda.memory_reserved() / 2**30, 2)
        capacity_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    limit = limit or 16 * start
    first = first_exponent(start, limit, peak_gib, capacity_gib)
    found = largest_batch(bench_in_child(experiment, overrides, steps, warmup), start, limit, first)
    return {**found, **held}
