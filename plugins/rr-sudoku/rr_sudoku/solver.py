"""An exact Sudoku solver on bitmasks: constraint propagation plus backtracking.

Each cell holds a bitmask of its candidate digits (bit ``d - 1`` for digit ``d``).
Propagation applies naked singles (a solved cell removes its digit from its
peers) and hidden singles (a digit with one place left in a unit goes there)
until neither applies; the search then branches on a cell with the fewest
candidates. Counting solutions up to 2 proves uniqueness.

Difficulty is the number of *guesses*: candidate assignments tried at branch
points while proving uniqueness. For a unique puzzle that search visits the
whole tree, so the count does not depend on the order digits are tried in; 0
means singles alone solve the puzzle.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from rr_sudoku.grid import Geometry, geometry, size_of_length

_POPCOUNT = [bin(mask).count("1") for mask in range(1 << 9)]


@attrs.frozen
class Label:
    """What the solver found for one puzzle.

    ``solutions`` is 0, 1 or 2 (2 meaning "at least two"); ``solution`` the first
    solution found (digits, or None); ``guesses`` the difficulty (see module doc).
    """

    solutions: int
    solution: np.ndarray | None
    guesses: int

    @property
    def unique(self) -> bool:
        return self.solutions == 1


def _propagate(cands: list[int], queue: list[int], geo: Geometry) -> bool:
    """Apply naked and hidden singles in place; False on a contradiction."""
    peers, units, full = geo.peers, geo.units, geo.full
    while True:
        while queue:
            cell = queue.pop()
            bit = cands[cell]
            for peer in peers[cell]:
                mask = cands[peer]
                if mask & bit:
                    mask ^= bit
                    if not mask:
                        return False
                    cands[peer] = mask
                    if not mask & (mask - 1):
                        queue.append(peer)
        # Hidden singles: digits seen exactly once in a unit, found with two running
        # masks ("seen once" and "seen at least twice") instead of per-digit counts.
        for unit in units:
            once = twice = 0
            for cell in unit:
                mask = cands[cell]
                twice |= once & mask
                once |= mask
            if once != full:
                return False  # some digit has no place left in this unit
            hidden = once & ~twice
            if hidden:
                for cell in unit:
                    mask = cands[cell]
                    single = mask & hidden
                    if single and single != mask:
                        if single & (single - 1):
                            return False  # two digits need this one cell
                        cands[cell] = single
                        queue.append(cell)
        if not queue:
            return True


class _Search:
    """Depth-first search counting solutions up to ``limit``."""

    def __init__(self, geo: Geometry, limit: int, order: Callable[[int], list[int]] | None) -> None:
        self.geo = geo
        self.limit = limit
        self.order = order
        self.solutions: list[list[int]] = []
        self.guesses = 0

    def run(self, cands: list[int]) -> None:
        best, best_count = -1, 99
        for cell, mask in enumerate(cands):
            count = _POPCOUNT[mask]
            if 1 < count < best_count:
                best, best_count = cell, count
                if count == 2:
                    break
        if best < 0:
            self.solutions.append(cands)
            return
        mask = cands[best]
        bits = [1 << d for d in range(self.geo.size) if mask >> d & 1]
        if self.order is not None:
            bits = self.order(bits)
        for bit in bits:
            self.guesses += 1
            child = cands.copy()
            child[best] = bit
            if _propagate(child, [best], self.geo):
                self.run(child)
            if len(self.solutions) >= self.limit:
                return


def _initial_candidates(puzzle: Sequence[int], geo: Geometry) -> tuple[list[int], list[int]] | None:
    cands, queue = [], []
    for cell, digit in enumerate(puzzle):
        if digit:
            cands.append(1 << (digit - 1))
            queue.append(cell)
        else:
            cands.append(geo.full)
    return cands, queue


def solve(
    puzzle: Sequence[int] | np.ndarray, limit: int = 2, order: Callable[[list[int]], list[int]] | None = None
) -> tuple[list[np.ndarray], int]:
    """Up to ``limit`` solutions of ``puzzle`` (digits, 0 blank) and the guesses made.

    ``order`` may reorder the candidate bits tried at each branch (the generator
    passes a seeded shuffle to draw random full grids).
    """
    puzzle = [int(d) for d in np.asarray(puzzle).reshape(-1)]
    geo = geometry(size_of_length(len(puzzle)))
    cands, queue = _initial_candidates(puzzle, geo)
    search = _Search(geo, limit, order)
    if _propagate(cands, queue, geo):
        search.run(cands)
    solutions = [np.array([mask.bit_length() for mask in found], dtype=np.uint8) for found in search.solutions]
    return solutions, search.guesses


def label(puzzle: Sequence[int] | np.ndarray) -> Label:
    """Solve ``puzzle``, proving whether its solution is unique, and rate it."""
    solutions, guesses = solve(puzzle, limit=2)
    return Label(solutions=len(solutions), solution=solutions[0] if solutions else None, guesses=guesses)


def _label_chunk(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = np.zeros(len(chunk), dtype=np.int8)
    solutions = np.zeros_like(chunk, dtype=np.uint8)
    guesses = np.zeros(len(chunk), dtype=np.int64)
    for row, puzzle in enumerate(chunk):
        found = label(puzzle)
        counts[row] = found.solutions
        guesses[row] = found.guesses
        if found.solution is not None:
            solutions[row] = found.solution
    return counts, solutions, guesses


@attrs.frozen
class Labels:
    """Labels of many puzzles: ``solutions`` (N,) in {0, 1, 2}, ``grids`` (N, cells)
    the first solution found (zeros where none), ``guesses`` (N,) difficulty."""

    solutions: np.ndarray
    grids: np.ndarray
    guesses: np.ndarray


def default_jobs() -> int:
    """Worker processes to use by default: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def label_many(
    puzzles: np.ndarray, jobs: int = 0, chunk_size: int = 64, progress: Callable[[int], None] | None = None
) -> Labels:
    """Label ``puzzles`` (N, cells) in parallel over ``jobs`` processes (0: all CPUs).

    Results come back in input order whatever the number of processes;
    ``progress(k)`` is called as each chunk of ``k`` puzzles finishes.
    """
    puzzles = np.asarray(puzzles, dtype=np.uint8).reshape(len(puzzles), -1)
    jobs = jobs or default_jobs()
    chunks = [puzzles[start : start + chunk_size] for start in range(0, len(puzzles), chunk_size)]
    results = []
    with parallel_map(_label_chunk, chunks, jobs) as labelled:
        for result in labelled:
            results.append(result)
            if progress:
                progress(len(result[0]))
    if not results:
        return Labels(np.zeros(0, np.int8), np.zeros_like(puzzles), np.zeros(0, np.int64))
    counts, grids, guesses = (np.concatenate(parts) for parts in zip(*results, strict=True))
    return Labels(solutions=counts, grids=grids, guesses=guesses)


@contextlib.contextmanager
def parallel_map(function: Callable[[Any], Any], tasks: Sequence[Any], jobs: int) -> Iterator[Iterator[Any]]:
    """``function`` of each task over ``jobs`` worker processes: the results, in task order,
    as they come (in this process when one job or one task).

    Worker k takes tasks k, k + jobs, k + 2 jobs, ... and sends each result (or the
    exception it raised) back on a pipe of its own. No queue or lock is shared: a worker
    killed by a signal (SIGTERM or Ctrl-C to the process group) cannot leave the parent
    waiting on a lock it held, as ``multiprocessing.Pool.terminate`` then may. Leaving the
    ``with`` block, early included (an exception, the ``rr`` command line's SIGTERM), kills
    the workers; a worker whose parent has gone stops quietly. fork starts workers in
    milliseconds and they inherit the imported solver (the platform's default start
    method where fork does not exist).
    """
    jobs = min(jobs, len(tasks))
    if jobs <= 1:
        yield map(function, tasks)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else multiprocessing.get_start_method()
    context = multiprocessing.get_context(method)
    workers = []
    try:
        with _stopping_signals_held():
            for k in range(jobs):
                receive, send = context.Pipe(duplex=False)
                worker = context.Process(target=_work, args=(function, tasks[k::jobs], send), daemon=True)
                worker.start()
                send.close()  # the worker's end: reading then sees EOF if the worker dies
                workers.append((worker, receive))
        yield (_receive(*workers[index % jobs]) for index in range(len(tasks)))
    finally:
        for worker, receive in workers:
            if worker.is_alive():
                worker.kill()
            worker.join()
            receive.close()


_STOPPING = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _stopping_signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait while workers start (this thread; rr builds data in one):
    a handler that raises would otherwise raise inside fork's own hooks, where Python
    prints the exception and drops it. Each worker starts with them held, and takes them
    once its own handlers are set."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _receive(worker: Any, receive: Any) -> Any:
    try:
        ok, value = receive.recv()
    except EOFError:
        worker.join()
        if worker.exitcode in (-signal.SIGINT, -signal.SIGTERM):
            # Most likely the whole process group was signalled and this process's own
            # signal is on its way: take it now, so its handler decides (rr: one line, 130/143).
            signal.raise_signal(-worker.exitcode)
        raise RuntimeError(f"worker process {worker.pid} died (exit code {worker.exitcode})") from None
    if not ok:
        raise value
    return value


def _work(function: Callable[[Any], Any], tasks: Sequence[Any], send: Any) -> None:
    # Signals are the parent's to handle (rr's SIGTERM handler is inherited through fork):
    # Ctrl-C reaches the parent, which kills the workers; SIGTERM ends a worker silently.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPPING)
    try:
        for task in tasks:
            try:
                result = (True, function(task))
            except Exception as error:
                result = (False, error)
            try:
                send.send(result)
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as error:  # an exception that does not pickle
                send.send((False, RuntimeError(f"{type(result[1]).__name__}: {result[1]} ({error})")))
    except (BrokenPipeError, ConnectionResetError):  # the parent has gone: nobody to tell
        pass
    finally:
        send.close()
