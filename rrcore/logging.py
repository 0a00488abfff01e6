"""Metrics on rank 0: the progress line, ``metrics.jsonl`` and optional wandb."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import attrs


@attrs.define
class JsonlLoggerConfig:
    """``jsonl`` writes ``metrics.jsonl`` in the run folder; ``filename`` renames it."""

    filename: str = "metrics.jsonl"


class JsonlLogger:
    """Appends one JSON object per logging step: ``{"step": N, "time": s, ...metrics}``."""

    def __init__(self, config: JsonlLoggerConfig, context: Any) -> None:
        self.path = Path(context.run_dir) / config.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@attrs.define
class WandbLoggerConfig:
    """``wandb``: Weights & Biases. Runs offline when no ``WANDB_API_KEY`` is set."""

    project: str = "rr"
    entity: str = ""
    mode: str = ""  # "", "online", "offline", "disabled"; "" = offline without an API key


class WandbLogger:
    """Logs to Weights & Biases; needs the optional ``wandb`` package."""

    def __init__(self, config: WandbLoggerConfig, context: Any) -> None:
        try:
            import wandb
        except ImportError:
            raise RuntimeError("logger 'wandb' needs the wandb package: pip install 'rrcore[wandb]'") from None
        mode = config.mode or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self._run = wandb.init(project=config.project, entity=config.entity or None, mode=mode,
                               name=context.experiment.run.name, dir=str(context.run_dir),
                               config=context.experiment.to_dict())

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=step)

    def close(self) -> None:
        self._run.finish()


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
