"""Training metrics: sums on the device each step, means on logging steps.

A loss head returns every metric as a sum over this rank's rows and declares, in
``metric_reductions``, what each sum is divided by:

``PER_EXAMPLE``
    the rows stepped over the window (steps x global batch size): losses, which
    every row contributes to at every step.
``PER_HALTED``
    the rows that halted (the loss head's ``count`` metric): accuracies and step
    counts, which only mean something once a row has its final answer.

``count`` itself is reported as ``halted``, the share of rows that halted.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist

PER_EXAMPLE = "example"
PER_HALTED = "halted"
HALTED_COUNT = "count"


class UndeclaredMetricError(ValueError):
    """A loss head returned a metric it declares no reduction for."""


def reduce_metrics(
    sums: Mapping[str, torch.Tensor],
    reductions: Mapping[str, str],
    steps: int,
    global_batch_size: int,
    prefix: str,
    world_size: int = 1,
) -> dict[str, float]:
    """Means of metric ``sums`` over ``steps`` optimizer steps, summed over ranks first.

    ``reductions`` maps each metric to :data:`PER_EXAMPLE` or :data:`PER_HALTED`; the
    trainer's own ``loss`` is per example. One host synchronisation: logging steps only.
    """
    if not sums:
        return {}
    reductions = {"loss": PER_EXAMPLE, **reductions}
    undeclared = sorted(set(sums) - set(reductions) - {HALTED_COUNT})
    if undeclared:
        raise UndeclaredMetricError(
            f"the loss head returned metric {undeclared[0]!r} but declares no reduction for "
            f"it in metric_reductions (use {PER_EXAMPLE!r} or {PER_HALTED!r})"
        )
    keys = sorted(sums)
    stacked = torch.stack([sums[k].to(torch.float64) for k in keys])
    if world_size > 1:
        dist.all_reduce(stacked)
    values = dict(zip(keys, stacked.tolist()))
    halted = max(values.pop(HALTED_COUNT, 0.0), 1.0)
    examples = max(1, steps * global_batch_size)
    denominators = {PER_EXAMPLE: examples, PER_HALTED: halted}
    out = {f"{prefix}/{key}": value / denominators[reductions[key]] for key, value in values.items()}
    out[f"{prefix}/halted"] = halted / examples
    return out
