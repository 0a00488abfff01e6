"""The core's metric loggers: ``jsonl`` (always on), ``wandb`` and ``tensorboard``.

They are ordinary plugins, registered in :mod:`rrcore.training.builtin` through
``rr_register_loggers`` as a third party's would be. A logger is built on rank 0 only as
``factory(config, context: RunContext)`` and gets ``log(step, metrics)`` every
``train.log_interval`` steps (``train/...`` metrics) and after every evaluation (each
evaluator's metrics, at the same step as the training metrics logged with it), then
``close()`` when training stops for any reason. ``wandb`` and ``tensorboard`` need
optional packages (``pip install 'rrcore[wandb]'``, ``'rrcore[tensorboard]'``); without
them the run stops at its start with a message that says so.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Literal

import attrs

from rrcore.base.files import is_disk_full, reporting_full_disk
from rrcore.base.validators import positive
from rrcore.contracts.registry import build

METRICS_FILE = "metrics.jsonl"  # read back by rr report, the plots, rr sweep and the run-folder check


def _missing(logger: str, package: str) -> RuntimeError:
    return RuntimeError(
        f"logger {logger!r} needs the {package} package: pip install 'rrcore[{logger}]' (or pip install {package})"
    )


class JsonlLogger:
    """``jsonl``: appends one JSON object per log call to ``metrics.jsonl`` in the run folder,
    ``{"step": N, "time": unix seconds, ...metrics}`` (non-finite numbers as strings).

    Always on: the trainer adds it when ``[[loggers]]`` does not name it. It has no options.
    """

    def __init__(self, config: None, context: Any) -> None:
        self.path = Path(context.run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in metrics.items()}
        with reporting_full_disk(self.path):
            self._file.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
            self._file.flush()

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as error:
            if not is_disk_full(error):
                raise
            # The line that did not fit was reported by log(); readers skip a cut line.


@attrs.define
class WandbLoggerConfig:
    """``[[loggers]] plugin = "wandb"``: Weights & Biases.

    ``mode``: ``"online"``, ``"offline"`` (a run folder under ``RUN_DIR/wandb/`` to upload
    later with ``wandb sync``), ``"disabled"``, or ``""``: online when ``WANDB_API_KEY`` is
    set, else offline. ``group`` gathers runs in the wandb UI (e.g. a sweep's), ``tags`` labels
    the run. The run's name is ``run.name`` and its config the resolved experiment.
    """

    project: str = "rr"
    entity: str = ""
    mode: Literal["", "online", "offline", "disabled"] = ""
    group: str = ""
    tags: list[str] = attrs.field(factory=list)


class WandbLogger:
    """Logs to Weights & Biases; needs the optional ``wandb`` package."""

    def __init__(self, config: WandbLoggerConfig, context: Any) -> None:
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        mode = config.mode or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self._run = wandb.init(
            project=config.project,
            entity=config.entity or None,
            mode=mode,
            name=context.experiment.run.name,
            group=config.group or None,
            tags=config.tags or None,
            dir=str(context.run_dir),
            config=context.experiment.to_dict(),
        )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=step)

    def close(self) -> None:
        self._run.finish()


@attrs.define
class TensorBoardLoggerConfig:
    """``[[loggers]] plugin = "tensorboard"``: TensorBoard event files in ``RUN_DIR/<log_dir>``
    (view them with ``tensorboard --logdir RUN_DIR/tensorboard``); ``flush_seconds``: how
    often pending events are written (they are also written at the end)."""

    log_dir: str = "tensorboard"
    flush_seconds: float = attrs.field(default=30.0, validator=positive)


class TensorBoardLogger:
    """Writes each metric as a scalar (tag = metric name) at its step; needs ``tensorboard``."""

    def __init__(self, config: TensorBoardLoggerConfig, context: Any) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        self.log_dir = Path(context.run_dir) / config.log_dir
        self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=config.flush_seconds)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._writer.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        self._writer.close()


def make_loggers(experiment: Any, registry: Any, context: Any) -> list[Any]:
    """The ``[[loggers]]``, built through the registry (rank 0 only); ``jsonl`` first, always, once."""
    sections = [("jsonl", None)] + [(s.plugin, s.config) for s in experiment.loggers if s.plugin != "jsonl"]
    loggers = []
    try:
        for name, config in sections:
            loggers.append(build(registry.get("logger", name), config, context))
    except BaseException:
        for logger in loggers:  # e.g. jsonl's open file when wandb is missing
            logger.close()
        raise
    return loggers
