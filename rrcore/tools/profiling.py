"""``rr bench --profile DIR``: where a training step's time goes.

A few more training steps run under ``torch.profiler`` after the timed ones. On a GPU every
kernel is counted by kind (matrix products, attention, Triton element-wise and reduction
kernels inductor generated, copies) and by name; on the CPU, where there are no kernels,
the operators are counted by their own time. The table goes to ``DIR/profile.txt``, the
full timeline to ``DIR/trace.json.gz`` (open it in https://ui.perfetto.dev), and a summary
into ``rr bench``'s figures.
"""

from __future__ import annotations

import collections
import gzip
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

# Checked in order on the lower-cased kernel name; Triton kernels first, since inductor
# names its kernels after the operators they fuse ("..._scaled_dot_product_cudnn_...").
_KINDS = (
    ("triton reduction", ("triton_red", "triton_per")),
    ("triton element-wise", ("triton_",)),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "cublas")),
    ("attention", ("flash", "fmha", "sdpa", "attention", "cudnn")),
    ("copy/fill", ("memcpy", "memset", "copy", "fill")),
)
TOP_KERNELS = 40


def kernel_kind(name: str) -> str:
    """The kind of a GPU kernel, from its name."""
    lower = name.lower()
    for kind, marks in _KINDS:
        if any(mark in lower for mark in marks):
            return kind
    return "other"


def write_profile(run_steps: Callable[[int], None], steps: int, out_dir: Path, device: torch.device) -> dict[str, Any]:
    """Profile ``run_steps(steps)`` and write the table and trace into ``out_dir``; returns
    the summary (milliseconds per step)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run_steps(steps)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    trace = out_dir / "trace.json"
    prof.export_chrome_trace(str(trace))
    with trace.open("rb") as source, gzip.open(out_dir / "trace.json.gz", "wb") as target:
        shutil.copyfileobj(source, target)
    trace.unlink()
    if device.type == "cuda":
        summary, lines = _kernel_table(prof.events(), steps)
    else:
        summary, lines = _operator_table(prof, steps)
    (out_dir / "profile.txt").write_text("\n".join(lines) + "\n")
    return {"dir": str(out_dir), "steps": steps, **summary}


def _kernel_table(events: Any, steps: int) -> tuple[dict[str, Any], list[str]]:
    by_name: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for event in events:
        if event.device_type != torch.autograd.DeviceType.CUDA or getattr(event, "is_user_annotation", False):
            continue
        by_name[event.name][0] += event.time_range.elapsed_us() / 1000 / steps
        by_name[event.name][1] += 1
    kinds: dict[str, float] = collections.defaultdict(float)
    for name, (ms, _) in by_name.items():
        kinds[kernel_kind(name)] += ms
    busy = sum(kinds.values())
    kernels = sum(count for _, count in by_name.values()) / steps
    lines = [f"GPU busy {busy:.2f} ms per step, {kernels:.0f} kernels per step (mean of {steps} steps)"]
    if not by_name:
        lines.append(
            "no GPU kernels were recorded: CUDA-graph replays can hide them from the profiler; "
            "profile again with --set train.cuda_graphs=false"
        )
    lines += ["", "ms per step by kind:"] + [f"  {ms:9.2f}  {kind}" for kind, ms in _largest(kinds)]
    lines += ["", f"the {TOP_KERNELS} longest kernels (ms per step, launches per step, kind, name):"]
    for name, (ms, count) in _largest(by_name, key=lambda item: item[1][0])[:TOP_KERNELS]:
        lines.append(f"  {ms:9.2f} {count / steps:6.0f}x  {kernel_kind(name):20s} {name}")
    summary = {"device_busy_ms": round(busy, 2), "kernels": round(kernels), "kinds_ms": _rounded(kinds)}
    return summary, lines


def _operator_table(prof: Any, steps: int) -> tuple[dict[str, Any], list[str]]:
    averages = sorted(prof.key_averages(), key=lambda average: -average.self_cpu_time_total)
    busy = sum(average.self_cpu_time_total for average in averages) / 1000 / steps
    lines = [f"CPU busy {busy:.2f} ms per step in operators (mean of {steps} steps)", ""]
    lines.append(f"the {TOP_KERNELS} operators with the most own time (ms per step, calls per step):")
    for average in averages[:TOP_KERNELS]:
        lines.append(
            f"  {average.self_cpu_time_total / 1000 / steps:9.2f} {average.count / steps:6.0f}x  {average.key}"
        )
    return {"cpu_busy_ms": round(busy, 2)}, lines


def _largest(table: dict[str, Any], key: Callable[[Any], float] = lambda item: item[1]) -> list[Any]:
    return sorted(table.items(), key=key, reverse=True)


def _rounded(table: dict[str, float]) -> dict[str, float]:
    return {name: round(ms, 2) for name, ms in _largest(table)}
