"""The training clock: wall-clock time a run has spent training, evaluation left out.

It answers two questions of ``[train]``: has the run used its ``time_budget_minutes``, and
has it passed the next of its ``eval_at_minutes`` (the points of a time-to-accuracy curve)?
It starts when ``rr run`` starts building the run: building (or finding) the data set,
compilation and checkpoints count as training; evaluations do not.

The host runs ahead of the GPU by the kernels it has queued, so the host's clock alone
would read a few steps early. The clock reads only the host's time at every step (no
synchronisation); when that time says a mark has passed, it waits for the device once and
reads again, so every recorded time is the device's. A resumed run continues from the
seconds its checkpoint saved.
"""

from __future__ import annotations

import time

import torch


class TrainingClock:
    """Seconds of training since ``start()`` (plus ``seconds`` carried over from a resume),
    paused while an evaluation runs (:meth:`pause`, :meth:`resume`)."""

    def __init__(
        self,
        device: torch.device,
        budget_minutes: float = 0.0,
        eval_at_minutes: list[float] | None = None,
        seconds: float = 0.0,
    ) -> None:
        self.device = device
        self.budget_seconds = budget_minutes * 60.0
        self.marks = [m * 60.0 for m in eval_at_minutes or [] if m * 60.0 > seconds]
        self.carried = seconds
        self.started: float | None = None

    def start(self, at: float | None = None) -> None:
        """Start counting, from ``at`` (a ``time.perf_counter()`` reading) or now."""
        self.started = time.perf_counter() if at is None else at

    @property
    def seconds(self) -> float:
        """Training seconds so far, as the host sees them (may lead the device)."""
        if self.started is None:
            return self.carried
        return self.carried + time.perf_counter() - self.started

    def _device_seconds(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self.seconds

    def eval_due(self) -> bool:
        """Whether training has passed the next ``eval_at_minutes`` mark (consumes it)."""
        if not self.marks or self.seconds < self.marks[0]:
            return False
        now = self._device_seconds()
        passed = [m for m in self.marks if m <= now]
        self.marks = self.marks[len(passed) :]
        return bool(passed)

    def out_of_time(self) -> bool:
        """Whether the run has trained for its whole budget (False without one)."""
        return (
            self.budget_seconds > 0
            and self.seconds >= self.budget_seconds
            and (self._device_seconds() >= self.budget_seconds)
        )

    def pause(self) -> float:
        """Stop the clock (before an evaluation); returns the training seconds so far,
        the device's work included."""
        seconds = self._device_seconds()
        self.carried, self.started = seconds, None
        return seconds

    def resume(self) -> None:
        """Start the clock again after an evaluation."""
        self.start()
