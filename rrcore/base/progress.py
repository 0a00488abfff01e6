"""Progress of long work (data builds, training), one facility for all of rr.

On a terminal a live bar (tqdm) is redrawn in place. Elsewhere (log files, CI,
captured output) bars would fill the log with carriage returns, so plain lines
are printed instead: one every ``interval`` seconds with the count, percentage,
rate and ETA, and one when the work ends. ``RR_PROGRESS_INTERVAL`` sets the
interval of those lines (seconds, default 10).

Builders use :func:`progress`::

    with progress(len(tasks), "arc: writing train", unit="tasks") as bar:
        for task in tasks:
            ...
            bar.update()

The trainer uses :class:`TrainingProgress` (step, loss, accuracy, steps/s, ETA).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

DEFAULT_INTERVAL = 10.0


def format_duration(seconds: float) -> str:
    """``1h02m`` or ``3m07s``; ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _interval() -> float:
    try:
        return float(os.environ.get("RR_PROGRESS_INTERVAL", DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL


class Progress:
    """Counts work done out of ``total`` (None: unknown) and shows it on ``stream``.

    ``update(n)`` adds ``n`` done; ``status(text)`` sets the text shown after the
    count (e.g. the loss); ``message(text)`` prints a whole line without breaking the
    bar; ``close()`` ends it (also on leaving a ``with`` block).
    """

    def __init__(
        self,
        total: int | None,
        description: str,
        *,
        unit: str = "it",
        initial: int = 0,
        stream: TextIO | None = None,
        interval: float | None = None,
    ) -> None:
        self.total, self.description, self.unit = total, description, unit
        self.count = initial
        self.stream = stream or sys.stderr
        self.interval = _interval() if interval is None else interval
        self._initial = initial
        self._status = ""
        self._start = self._last_line = time.perf_counter()
        self._closed = False
        self._printed: int | None = None  # the count the last plain line showed
        self._bar: Any = None
        if _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=description,
                unit=f" {unit}",
                initial=initial,
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
                mininterval=0.2,
            )

    @property
    def live(self) -> bool:
        """True when drawing a live bar (on a terminal), False when printing plain lines."""
        return self._bar is not None

    def update(self, count: int = 1, *, force: bool = False) -> None:
        """Add ``count`` done; on plain output print a line if ``interval`` has passed (or ``force``)."""
        self.count += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.perf_counter()
        if force or now - self._last_line >= self.interval:
            self._last_line = now
            self._write(self.line(now))

    def status(self, text: str) -> None:
        """The text shown after the count (a live bar redraws it at once)."""
        self._status = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def message(self, text: str) -> None:
        """Print ``text`` as a line of its own, the bar redrawn below it."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self._write(text)

    def rate(self, now: float | None = None) -> float:
        """Units per second since the start."""
        elapsed = (now or time.perf_counter()) - self._start
        return (self.count - self._initial) / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        """The plain progress line: count, percentage, status, rate and ETA."""
        now = now or time.perf_counter()
        rate = self.rate(now)
        parts = [
            f"{self.description}: {self.count}/{self.total} {self.unit}"
            if self.total is not None
            else f"{self.description}: {self.count} {self.unit}"
        ]
        if self.total:
            parts[0] += f" ({100 * self.count / self.total:.0f}%)"
        if self._status:
            parts.append(self._status)
        parts.append(f"{rate:.2f} {self.unit}/s")
        if self.total is not None and self.count < self.total:
            parts.append(f"ETA {format_duration((self.total - self.count) / rate if rate > 0 else math.inf)}")
        else:
            parts.append(f"in {format_duration(now - self._start)}")
        return " | ".join(parts)

    def close(self) -> None:
        """End the bar; plain output prints the final count unless it was just printed."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.count != self._printed:
            self._write(self.line())

    def _write(self, text: str) -> None:
        self._printed = self.count
        self.stream.write(text + "\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def progress(
    total: int | None,
    description: str,
    *,
    unit: str = "it",
    stream: TextIO | None = None,
    interval: float | None = None,
) -> Progress:
    """A :class:`Progress` on ``stream`` (default stderr): a live bar on a terminal, plain
    lines every ``interval`` seconds (default ``RR_PROGRESS_INTERVAL`` or 10) elsewhere."""
    return Progress(total, description, unit=unit, stream=stream, interval=interval)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False


_METRICS = (("train/loss", "loss"), ("train/accuracy", "acc"), ("train/exact_accuracy", "exact"))


class TrainingProgress:
    """Rank 0's training progress: step, loss, accuracy, exact accuracy, steps/s and ETA.

    ``advance(step)`` on every other step moves the count alone; ``update(step, metrics)``
    on logging steps also shows the new numbers. Plain output prints the first update,
    then one line every ``interval`` seconds, and the last step. ``budget_left`` (the
    training seconds a ``train.time_budget_minutes`` run has left) adds them to the numbers:
    such a run ends before the step count does, so the ETA of the steps alone overstates.
    """

    def __init__(
        self,
        total_steps: int,
        stream: TextIO | None = None,
        start_step: int = 0,
        interval: float | None = None,
        budget_left: Callable[[], float] | None = None,
    ) -> None:
        self.total_steps = total_steps
        self._budget_left = budget_left
        self._progress = Progress(
            total_steps, "train", unit="steps", initial=start_step, stream=stream, interval=interval
        )
        self._updates = 0

    def advance(self, step: int) -> None:
        """Move the count to ``step``, the numbers shown left as they are: called every step,
        it reads nothing from the device (the metrics stay there until a logging step)."""
        self._progress.update(step - self._progress.count)

    def update(self, step: int, metrics: dict[str, float]) -> None:
        """Move the count to ``step`` and show ``metrics`` (a logging step)."""
        shown = [f"{label} {metrics[key]:.4f}" for key, label in _METRICS if key in metrics]
        if self._budget_left is not None:
            shown.append(f"budget left {format_duration(max(0.0, self._budget_left()))}")
        self._progress.status(" | ".join(shown))
        self._updates += 1
        self._progress.update(step - self._progress.count, force=self._updates == 1 or step >= self.total_steps)

    def message(self, text: str) -> None:
        """Print a full line (evaluation results, checkpoints) without breaking the bar."""
        self._progress.message(text)

    def close(self) -> None:
        self._progress.close()
