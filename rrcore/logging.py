"""Rank 0's progress line (the metric loggers are plugins, in :mod:`rrcore.loggers`)."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class ProgressLine:
    """Rank 0's progress: step, loss, exact accuracy, steps/s and ETA.

    On a terminal the line is redrawn in place; otherwise (logs, CI) one line is
    printed per update.
    """

    def __init__(self, total_steps: int, stream: TextIO | None = None, start_step: int = 0) -> None:
        self.total_steps = total_steps
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._start_time = time.perf_counter()
        self._start_step = start_step

    def update(self, step: int, metrics: dict[str, float]) -> None:
        elapsed = time.perf_counter() - self._start_time
        rate = (step - self._start_step) / elapsed if elapsed > 0 else 0.0
        eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
        parts = [f"step {step}/{self.total_steps}"]
        for key, label in (("train/loss", "loss"), ("train/accuracy", "acc"), ("train/exact_accuracy", "exact")):
            if key in metrics:
                parts.append(f"{label} {metrics[key]:.4f}")
        parts += [f"{rate:.2f} steps/s", f"ETA {format_duration(eta)}"]
        line = " | ".join(parts)
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a full line (evaluation results, checkpoints) without breaking the bar."""
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
