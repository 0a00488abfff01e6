"""The core's own components, registered through the same hooks as any plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import attrs
import torch

from rrcore import hookimpl
from rrcore.base.distributed import all_reduce_sum
from rrcore.base.validators import RATE_MAX, in_range
from rrcore.contracts.errors import ConfigError
from rrcore.contracts.protocols import EvalContext
from rrcore.contracts.specs import DatasetSpec, EvaluatorSpec, LoggerSpec, LossHeadSpec, OptimizerSpec
from rrcore.data.format import IGNORE_LABEL
from rrcore.model.act_loss import ACTLossConfig, ACTLossHead
from rrcore.training.adam_atan2 import AdamAtan2
from rrcore.training.loggers import (
    JsonlLogger,
    TensorBoardLogger,
    TensorBoardLoggerConfig,
    WandbLogger,
    WandbLoggerConfig,
)

# -- loss head ---------------------------------------------------------------------------


@hookimpl
def rr_register_loss_heads() -> list[LossHeadSpec]:
    return [
        LossHeadSpec(
            name="act",
            factory=lambda config, model: ACTLossHead(model, config),
            config_class=ACTLossConfig,
            description="LM loss + Q-halt BCE (+ bootstrapped Q-continue) over ACT steps",
        )
    ]


# -- optimizers --------------------------------------------------------------------------


@attrs.define
class AdamAtan2Config:
    """Extra keys of the ``adam_atan2`` optimizer (lr, betas, weight decay come from ``[train]``).

    ``a`` scales the update ``a * atan2(m, b * sqrt(v))``. rr's default 1.0 gives
    updates bounded by pi/2 * lr, as the references' CUDA AdamATan2 (no scale
    factor); adam-atan2-pytorch's own default is 1.27.
    """

    a: float = attrs.field(default=1.0, validator=in_range(0, RATE_MAX, low_open=True))
    b: float = attrs.field(default=1.0, validator=in_range(0, RATE_MAX, low_open=True))


def _make_adam_atan2(param_groups: list[dict[str, Any]], config: AdamAtan2Config) -> torch.optim.Optimizer:
    return AdamAtan2(param_groups, lr=param_groups[0]["lr"], a=config.a, b=config.b)


@attrs.define
class AdamWConfig:
    """Extra keys of the ``adamw`` optimizer."""

    eps: float = attrs.field(default=1e-8, validator=in_range(0, RATE_MAX, low_open=True))


def _make_adamw(param_groups: list[dict[str, Any]], config: AdamWConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups, lr=param_groups[0]["lr"], eps=config.eps)


@attrs.define
class MuonMatricesConfig:
    """Extra keys of the ``muon_matrices`` optimizer: ``torch.optim.Muon`` alone, over
    exactly the parameters it is given, each a matrix (give it the hidden weight matrices
    with ``[optimizer.groups.NAME] params = "hidden_matrices"``; the rest stays with
    ``[optimizer]``). rr-urm's ``muon`` instead splits one group into Muon and AdamW itself.

    Each step: ``buffer = lerp(buffer, g, 1 - momentum)``; the update (with ``nesterov``,
    ``lerp(g, buffer, momentum)``) is orthogonalised by ``ns_steps`` Newton-Schulz
    iterations (in bfloat16); ``p *= 1 - lr * weight_decay`` (decoupled); ``p -= lr * scale
    * update``, with ``scale`` from ``adjust_lr``: ``original`` (Keller Jordan's Muon)
    ``sqrt(max(1, rows / cols))``, ``match_rms_adamw`` (Moonlight) ``0.2 * sqrt(max(rows,
    cols))``, giving the step AdamW's RMS. Defaults are torch's (and Keller Jordan's).
    """

    momentum: float = attrs.field(default=0.95, validator=in_range(0, 1, high_open=True))
    nesterov: bool = True
    ns_steps: int = attrs.field(default=5, validator=in_range(1, 99))
    adjust_lr: Literal["original", "match_rms_adamw"] = "original"


def _make_muon_matrices(param_groups: list[dict[str, Any]], config: MuonMatricesConfig) -> torch.optim.Optimizer:
    for group in param_groups:
        names = group.get("param_names") or [f"parameter {i}" for i in range(len(group["params"]))]
        for name, param in zip(names, group["params"]):
            if param.ndim != 2:
                raise ConfigError(
                    f"muon_matrices trains only matrices (2-D parameters), not {name} of shape "
                    f'{tuple(param.shape)}; params = "hidden_matrices" selects the hidden weight matrices'
                )
    groups = [{key: value for key, value in group.items() if key != "betas"} for group in param_groups]
    return torch.optim.Muon(
        groups,
        lr=groups[0]["lr"],
        momentum=config.momentum,
        nesterov=config.nesterov,
        ns_steps=config.ns_steps,
        adjust_lr_fn=config.adjust_lr,
    )


@hookimpl
def rr_register_optimizers() -> list[OptimizerSpec]:
    return [
        OptimizerSpec(
            name="adam_atan2",
            factory=_make_adam_atan2,
            config_class=AdamAtan2Config,
            description="Adam with atan2 instead of epsilon, the papers' optimizer (fused on CUDA)",
        ),
        OptimizerSpec(
            name="adamw",
            factory=_make_adamw,
            config_class=AdamWConfig,
            description="torch.optim.AdamW with decoupled weight decay",
        ),
        OptimizerSpec(
            name="muon_matrices",
            factory=_make_muon_matrices,
            config_class=MuonMatricesConfig,
            description="torch.optim.Muon for 2-D parameters only, e.g. an [optimizer.groups] table "
            'with params = "hidden_matrices"',
        ),
    ]


# -- data --------------------------------------------------------------------------------


@attrs.define
class BuiltDatasetConfig:
    """``[data] plugin = "built"``: a data set folder built elsewhere (e.g. by a reference
    repository's builder), holding ``train/`` and ``test/`` splits."""

    path: str


def _use_built(config: BuiltDatasetConfig, cache_dir: Path) -> Path:
    return Path(config.path).expanduser()


@hookimpl
def rr_register_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="built",
            factory=_use_built,
            config_class=BuiltDatasetConfig,
            description="a data set folder already built (rr or reference layout)",
        )
    ]


# -- evaluators --------------------------------------------------------------------------


@attrs.define
class ExactConfig:
    """``exact`` has no options."""


class ExactEvaluator:
    """Token accuracy and exact (whole sequence) accuracy for any task."""

    required_outputs: set[str] = set()
    headline_metrics = ("exact_accuracy", "accuracy")

    def __init__(self, config: ExactConfig, context: EvalContext) -> None:
        self.context = context

    def begin_eval(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self._sums = torch.zeros(3, dtype=torch.float64, device=self.context.device)

    def update_batch(self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
        labels = batch["labels"]
        mask = labels != IGNORE_LABEL
        correct = (outputs["preds"] == labels) & mask
        counts = mask.sum(-1).clamp_min(1)
        valid = batch["valid"]
        self._sums += torch.stack(
            [
                valid.sum(),
                torch.where(valid, correct.sum(-1) / counts, 0).sum(),
                (valid & (correct.sum(-1) == mask.sum(-1))).sum(),
            ]
        ).to(torch.float64)

    def result(self) -> dict[str, float] | None:
        """The metrics (rank 0), also written to ``results.json`` in the output folder."""
        count, accuracy, exact = all_reduce_sum(self._sums).tolist()
        if self.context.rank != 0:
            return None
        count = max(count, 1.0)
        results = {"accuracy": accuracy / count, "exact_accuracy": exact / count, "count": count}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        return results


@hookimpl
def rr_register_evaluators() -> list[EvaluatorSpec]:
    return [
        EvaluatorSpec(
            name="exact",
            factory=ExactEvaluator,
            config_class=ExactConfig,
            description="token and exact-sequence accuracy for any task",
        )
    ]


# -- loggers -----------------------------------------------------------------------------


@hookimpl
def rr_register_loggers() -> list[LoggerSpec]:
    return [
        LoggerSpec(
            name="jsonl",
            factory=JsonlLogger,
            config_class=None,
            description="metrics.jsonl in the run folder (always on)",
        ),
        LoggerSpec(
            name="wandb",
            factory=WandbLogger,
            config_class=WandbLoggerConfig,
            description="Weights & Biases (extra rrcore[wandb]; offline when no API key)",
        ),
        LoggerSpec(
            name="tensorboard",
            factory=TensorBoardLogger,
            config_class=TensorBoardLoggerConfig,
            description="TensorBoard event files in the run folder (extra rrcore[tensorboard])",
        ),
    ]
