"""Metric loggers on rank 0: ``metrics.jsonl`` and optional wandb (progress: :mod:`rrcore.progress`)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

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
