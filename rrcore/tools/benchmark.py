"""``rr bench``: training and evaluation throughput of an experiment on this machine.

A training step is one ACT step of the whole global batch: forward, backward and the
optimizer. Steps are timed one by one (CUDA events on a GPU, so timing adds no host
synchronisation) after untimed warm-up steps in which ``torch.compile`` compiles;
the figure reported is the median. Peak memory is the most the caching allocator
handed out over the whole benchmark, warm-up included. Compilation is counted too: graph breaks, graphs
compiled after warm-up (recompilations), steps whose CUDA-graph capture was skipped, and
the seconds the warm-up spent compiling, by phase (``warmup_compile_seconds``).

Under ``torchrun`` every rank times its own steps; the job goes at the pace of the slowest
rank, so ``step_ms`` is the largest of the ranks' medians, and each rank's figure is listed
too. :func:`scaling` compares such a run with a one-process run of the same experiment.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from rrcore.base import distributed
from rrcore.contracts.experiment import EvalConfig, Experiment
from rrcore.evaluation.pool import synchronize
from rrcore.evaluation.split import evaluate_split
from rrcore.tools.profiling import write_profile
from rrcore.training.build import build_run
from rrcore.training.run import Run
from rrcore.training.step import train_step


def _compile_counters() -> dict[str, int]:
    from torch._dynamo.utils import counters

    return {
        "graph_breaks": sum(counters["graph_break"].values()),
        "graphs_compiled": counters["stats"]["unique_graphs"],
        "cudagraph_skips": counters["inductor"]["cudagraph_skips"],
        "compile_cache_hits": counters["inductor"]["fxgraph_cache_hit"]
        + counters["aot_autograd"]["autograd_cache_hit"],
    }


# torch's dynamo_timed names: dynamo's compilation of a frame (tracing, then the backend:
# AOTAutograd and inductor on the forward graph), the backward graph's compilation (at the
# first backward pass, outside dynamo's), inductor's own work on every graph, and waits for
# its parallel kernel compiles.
_COMPILE_PHASES = {
    "frames": "_compile.compile_inner",
    "frame_backends": "OutputGraph.call_user_compiler",
    "backward": "compile_fx.<locals>.bw_compiler",
    "inductor": "compile_fx_inner",
    "kernel_compile_wait": "async_compile.wait",
}


def _compile_seconds(since: dict[str, float] | None = None) -> dict[str, float]:
    """Seconds spent compiling (since the figures ``since``): ``total`` (frames and
    backward graphs), ``dynamo_tracing`` (frames less their backends), ``inductor`` and
    ``kernel_compile_wait``. A phase that did not run, such as inductor on a compile-cache
    hit, counts 0. Where a first step's time goes."""
    from torch._dynamo.utils import compilation_time_metrics

    since = since or {}
    raw = {phase: sum(compilation_time_metrics.get(name, [])) for phase, name in _COMPILE_PHASES.items()}
    seconds = {
        "total": raw["frames"] + raw["backward"],
        "dynamo_tracing": raw["frames"] - raw["frame_backends"],
        "inductor": raw["inductor"],
        "kernel_compile_wait": raw["kernel_compile_wait"],
    }
    return {phase: round(value - since.get(phase, 0.0), 2) for phase, value in seconds.items()}


class _StepTimer:
    """Per-step durations: CUDA events on a GPU (read once at the end), else the host clock."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def durations_ms(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:])]
        return [1000 * (b - a) for a, b in zip(self.marks, self.marks[1:])]


def benchmark(
    experiment: Experiment,
    *,
    steps: int = 30,
    warmup: int = 5,
    eval_batches: int = 2,
    profile_dir: Path | None = None,
    profile_steps: int = 3,
) -> dict[str, Any]:
    """Time ``steps`` training steps after ``warmup`` untimed ones, then ``eval_batches``
    evaluation batches of ``halt_max_steps`` ACT steps each. With ``profile_dir``,
    ``profile_steps`` more training steps run under the profiler
    (:func:`rrcore.tools.profiling.write_profile`; figures under ``profile``). Nothing else is saved."""
    run = build_run(experiment, evaluators=False)
    device = run.device
    counters_start = _compile_counters()
    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "model": experiment.model.plugin,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "global_batch_size": experiment.train.global_batch_size,
        "train_examples_per_epoch": run.train_data.examples_per_epoch,
        "world_size": run.layout.world_size,
        "compile": run.step_fn.compiled,
        "cuda_graphs": run.step_fn.cuda_graphs,
        "autotune_pointwise": run.step_fn.compiled and experiment.train.autotune_pointwise,
        "dtype": str(run.forward_dtype).replace("torch.", ""),
        **_training_figures(run, steps, warmup, profile_dir, profile_steps),
    }
    after_steps = _compile_counters()
    figures["graph_breaks"] = after_steps["graph_breaks"] - counters_start["graph_breaks"]
    figures["cudagraph_skips"] = after_steps["cudagraph_skips"] - counters_start["cudagraph_skips"]
    # 0 means the first step compiled from nothing: its time is a cold start's.
    figures["compile_cache_hits"] = after_steps["compile_cache_hits"] - counters_start["compile_cache_hits"]
    if device.type == "cuda":
        # Over warm-up too: a CUDA-graph replay allocates nothing, its memory was taken
        # when the graph was recorded.
        figures["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        figures["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved(device) / 2**30, 2)
    if eval_batches and run.eval_data is not None:
        figures.update(_eval_figures(run, eval_batches))
        figures["graph_breaks"] = _compile_counters()["graph_breaks"] - counters_start["graph_breaks"]
    return figures


def _training_figures(
    run: Run, steps: int, warmup: int, profile_dir: Path | None = None, profile_steps: int = 0
) -> dict[str, Any]:
    """Step times of ``steps`` training steps after ``warmup`` untimed ones (the first one
    timed alone), then ``profile_steps`` profiled ones when ``profile_dir`` is given."""
    device, batches = run.device, run.train_data.train_batches()
    sums: dict[str, torch.Tensor] = {}
    carries: list[Any] = []
    compile_start = _compile_seconds()
    started = time.perf_counter()
    first_step_seconds = None
    for i in range(warmup):
        train_step(run, carries, next(batches)[1], sums, i)
        if i == 0:
            synchronize(device)
            first_step_seconds = time.perf_counter() - started
    synchronize(device)
    after_warmup = _compile_counters()
    compile_seconds = _compile_seconds(since=compile_start)
    timer = _StepTimer(device)
    start = time.perf_counter()
    timer.mark()
    for i in range(steps):
        train_step(run, carries, next(batches)[1], sums, warmup + i)
        timer.mark()
    synchronize(device)
    seconds = time.perf_counter() - start
    rank_step_ms = distributed.gather_floats(statistics.median(timer.durations_ms()), device)
    step_ms = max(rank_step_ms)
    figures = {
        "first_step_seconds": round(first_step_seconds, 2) if first_step_seconds is not None else None,
        "warmup_compile_seconds": compile_seconds,
        "timed_steps": steps,
        "step_ms": round(step_ms, 2),
        "mean_step_ms": round(1000 * seconds / steps, 2),
        "train_examples_per_second": round(run.layout.global_batch_size * 1000 / step_ms, 1),
        "step_ms_per_rank": [round(ms, 2) for ms in rank_step_ms],
        "train_examples_per_second_per_rank": [round(run.layout.local_batch * 1000 / ms, 1) for ms in rank_step_ms],
        "recompiles_after_warmup": _compile_counters()["graphs_compiled"] - after_warmup["graphs_compiled"],
    }
    if profile_dir is not None:

        def run_steps(count: int) -> None:
            for i in range(count):
                train_step(run, carries, next(batches)[1], sums, warmup + steps + i)

        if run.layout.world_size > 1:
            profile_dir = profile_dir / f"rank{run.layout.rank}"
        figures["profile"] = write_profile(run_steps, profile_steps, profile_dir, device)
    return figures


def _eval_figures(run: Run, eval_batches: int) -> dict[str, Any]:
    """Evaluation throughput over ``eval_batches`` batches, after one untimed (compiling) batch."""
    data, halt_max_steps, device = run.eval_data, run.experiment.act.halt_max_steps, run.device

    def evaluate(batches: _Limited) -> None:  # the papers' protocol: the engine's fixed halting
        evaluate_split(
            run.loss_head,
            batches,
            [],
            EvalConfig(),
            halt_max_steps=halt_max_steps,
            q_continue=run.experiment.act.q_continue,
            step=run.step_fn,
            rank=run.layout.rank,
        )

    evaluate(_Limited(data, 1))
    synchronize(device)
    eval_warm = _compile_counters()
    limited = _Limited(data, eval_batches)
    start = time.perf_counter()
    evaluate(limited)
    synchronize(device)
    seconds = time.perf_counter() - start
    puzzles = min(limited.count * data.global_batch_size, data.num_examples)
    return {
        "eval_global_batch_size": data.global_batch_size,
        "eval_puzzles_per_second": round(puzzles / seconds, 1),
        "eval_halt_max_steps": halt_max_steps,
        "eval_recompiles_after_warmup": _compile_counters()["graphs_compiled"] - eval_warm["graphs_compiled"],
    }


def scaling(figures: dict[str, Any], single: dict[str, Any]) -> dict[str, Any]:
    """``figures`` with the scaling efficiency over ``single`` (a one-process ``rr bench``
    of the same experiment on the same kind of machine): examples/s with N ranks divided
    by N x examples/s with one. Raises ``ValueError`` naming what makes them incomparable."""
    if not isinstance(single, dict) or "train_examples_per_second" not in single:
        raise ValueError("no train_examples_per_second: not the JSON of rr bench --json-out")
    if single.get("world_size") != 1:
        raise ValueError(f"the one-process figures have world_size {single.get('world_size')}, not 1")
    for key in ("device", "model", "global_batch_size", "dtype", "compile", "cuda_graphs"):
        if single.get(key) != figures[key]:
            raise ValueError(
                f"{key} is {single.get(key)!r} in the one-process figures and "
                f"{figures[key]!r} here; compare runs of the same experiment and device"
            )
    ranks = figures["world_size"]
    single_rate = single["train_examples_per_second"]
    return {
        **figures,
        "single_train_examples_per_second": single_rate,
        "scaling_efficiency": round(figures["train_examples_per_second"] / (ranks * single_rate), 3),
    }


class _Limited:
    """The first ``n`` evaluation batches of a data set."""

    def __init__(self, data: Any, n: int) -> None:
        self.data, self.n, self.count = data, n, 0
        self.metadata = data.metadata

    def eval_batches(self):
        for i, batch in enumerate(self.data.eval_batches()):
            if i >= self.n:
                break
            self.count += 1
            yield batch
