"""``rr bench``: training and evaluation throughput of an experiment on this machine."""

from __future__ import annotations

import time
from typing import Any

import torch

from rrcore.config import Experiment
from rrcore.trainer import Trainer, run_evaluation


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(experiment: Experiment, *, steps: int = 20, warmup: int = 3, eval_batches: int = 2) -> dict[str, Any]:
    """Time ``steps`` training steps after ``warmup`` untimed ones, then ``eval_batches``
    evaluation batches of ``halt_max_steps`` ACT steps each. Nothing is saved."""
    trainer = Trainer(experiment, run_dir="/dev/null/unused")
    device = trainer.device
    batches = trainer.train_data.train_batches()
    sums: dict[str, torch.Tensor] = {}
    first_step_start = time.perf_counter()
    for i in range(warmup):
        _, batch = next(batches)
        trainer.train_step(batch, sums)
        if i == 0:
            _sync(device)
            first_step_seconds = time.perf_counter() - first_step_start
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        _, batch = next(batches)
        trainer.train_step(batch, sums)
    _sync(device)
    seconds = time.perf_counter() - start
    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "model": experiment.model.plugin,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "global_batch_size": experiment.train.global_batch_size,
        "world_size": trainer.world_size,
        "compile": trainer.compiled,
        "dtype": str(trainer.forward_dtype).replace("torch.", ""),
        "first_step_seconds": round(first_step_seconds, 2) if warmup else None,
        "step_ms": round(1000 * seconds / steps, 2),
        "steps_per_second": round(steps / seconds, 3),
        "train_examples_per_second": round(steps * experiment.train.global_batch_size / seconds, 1),
    }
    if device.type == "cuda":
        figures["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if eval_batches and trainer.eval_data is not None:
        data = trainer.eval_data
        limited = _Limited(data, eval_batches + 1)
        run_evaluation(trainer.loss_head, _Limited(data, 1), [], experiment.act.halt_max_steps)  # warm-up
        _sync(device)
        start = time.perf_counter()
        run_evaluation(trainer.loss_head, limited, [], experiment.act.halt_max_steps)
        _sync(device)
        seconds = time.perf_counter() - start
        figures["eval_puzzles_per_second"] = round(limited.count * data.local_batch_size / seconds, 1)
        figures["eval_halt_max_steps"] = experiment.act.halt_max_steps
    return figures


class _Limited:
    """The first ``n`` evaluation batches of a data set."""

    def __init__(self, data: Any, n: int) -> None:
        self.data, self.n, self.count = data, n, 0

    def eval_batches(self):
        for i, batch in enumerate(self.data.eval_batches()):
            if i >= self.n:
                break
            self.count += 1
            yield batch
