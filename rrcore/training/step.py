"""One optimizer step: forward, backward, gradient synchronisation, optimizer and EMA.

It runs one ACT step for every row of the global batch (split over ranks and
gradient-accumulation micro-batches). Nothing in it waits for the GPU: metrics are summed
on the device, and the compiled ACT step may replay as a CUDA graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from rrcore.base.distributed import all_reduce_gradients

if TYPE_CHECKING:
    from rrcore.model.carry import Carry
    from rrcore.training.run import Run


def train_step(
    run: Run, carries: list[Carry], batch: dict[str, torch.Tensor], metric_sums: dict[str, torch.Tensor], step: int
) -> torch.Tensor:
    """Optimizer step ``step`` (0-based) over this rank's rows of ``batch``; ``carries``
    (one per micro-batch, made on the first call) and ``metric_sums`` are updated in
    place. Returns the (device) loss sum."""
    layout, act_model = run.layout, run.act_model
    run.loss_head.train()
    batch = run.augment(batch)  # fresh augmentations when the data set plugin draws them
    micro_batches = [
        {k: v[micro * layout.micro_batch : (micro + 1) * layout.micro_batch] for k, v in batch.items()}
        for micro in range(layout.grad_accum_steps)
    ]
    if not carries:
        carries.extend(run.loss_head.initial_carry(micro_batches[0]) for _ in micro_batches)
    total_loss = torch.zeros((), device=run.device)
    for micro, micro_batch in enumerate(micro_batches):
        exploration = (
            act_model.exploration(layout.micro_batch, run.device, layout.row_offset(micro))
            if act_model.explores
            else None
        )
        result = run.step_fn(carries[micro], micro_batch, exploration)
        carries[micro], loss, metrics = result.carry, result.loss, result.metrics
        (loss / layout.global_batch_size).backward()
        if layout.grad_accum_steps > 1:
            run.optimizers.accumulate()
        total_loss += loss.detach()
        for key, value in metrics.items():
            metric_sums[key] = metric_sums.get(key, 0) + value.detach().to(torch.float64)
    metric_sums["loss"] = metric_sums.get("loss", 0) + total_loss.to(torch.float64)
    all_reduce_gradients(run.optimizers.parameters)  # sum over ranks, one collective
    run.optimizers.step(step)
    if run.ema is not None:
        run.ema.update(run.model, step)
    return total_loss
