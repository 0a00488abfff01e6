"""``rr bench --profile``: the table of where a step's time goes, and the timeline."""

from __future__ import annotations

import gzip
import json
import subprocess
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore.cli.main import main
from rrcore.tools import batchsearch
from rrcore.tools.batchsearch import BatchSearchError, bench_in_child, first_exponent, largest_batch
from rrcore.tools.profiling import _kernel_table, kernel_kind


def test_bench_profile_writes_the_table_and_the_timeline(toy_registry, tmp_path):
    out = tmp_path / "prof"
    result = CliRunner().invoke(
        main,
        ["bench", str(toy_experiment(tmp_path / "exp.toml")), "--steps", "2", "--warmup", "1"]
        + ["--eval-batches", "0", "--profile", str(out), "--profile-steps", "2"],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output[result.output.index("{") :])
    assert figures["profile"]["dir"] == str(out) and figures["profile"]["steps"] == 2
    assert figures["profile"]["cpu_busy_ms"] > 0
    table = (out / "profile.txt").read_text().splitlines()
    assert table[0].startswith("CPU busy") and "(mean of 2 steps)" in table[0]
    assert any("aten::mm" in line or "aten::addmm" in line for line in table), table
    events = json.loads(gzip.decompress((out / "trace.json.gz").read_bytes()))["traceEvents"]
    assert any(event.get("name") == "aten::mm" for event in events)


def test_kernels_are_sorted_into_kinds_by_their_names():
    # Names as an H200 profile of the paper configs printed them (torch 2.11, cuBLAS, cuDNN).
    assert kernel_kind("nvjet_sm90_tst_192x192_64x4_2x1_v_bz_coopB_TNN") == "matmul"
    assert kernel_kind("void cutlass::Kernel2<cutlass_75_tensorop_s1688gemm_bf16_64x64_nt_align1>") == "matmul"
    assert kernel_kind("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7") == "attention"
    assert kernel_kind("triton_per_fused__to_copy_add_mean_mul_pow_rsqrt_view_6") == "triton reduction"
    # Inductor names the kernel feeding cuDNN after it: it is still element-wise work.
    assert kernel_kind("triton_poi_fused__scaled_dot_product_cudnn_attention__to_copy_cat") == "triton element-wise"
    assert kernel_kind("Memset (Device)") == "copy/fill"
    assert kernel_kind("void at::native::index_elementwise_kernel<128, 4>") == "other"


def _kernel(name: str, microseconds: float, annotation: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        device_type=torch.autograd.DeviceType.CUDA,
        is_user_annotation=annotation,
        time_range=SimpleNamespace(elapsed_us=lambda: microseconds),
    )


def test_the_kernel_table_counts_per_step_and_skips_annotations():
    cpu_op = SimpleNamespace(name="aten::mm", device_type=torch.autograd.DeviceType.CPU)
    events = [cpu_op, _kernel("Optimizer.step#AdamAtan2.step", 9000.0, annotation=True)]
    events += [_kernel("nvjet_sm90_tst_128x256", 400.0) for _ in range(4)]
    events += [_kernel("triton_poi_fused_add_mul_silu_8", 100.0) for _ in range(2)]
    summary, lines = _kernel_table(events, steps=2)
    assert summary == {
        "device_busy_ms": 0.9,
        "kernels": 3,
        "kinds_ms": {"matmul": 0.8, "triton element-wise": 0.1},
    }
    assert lines[0] == "GPU busy 0.90 ms per step, 3 kernels per step (mean of 2 steps)"
    assert any(line.split()[:3] == ["0.80", "2x", "matmul"] for line in lines), lines
    assert not any("Optimizer.step" in line for line in lines)
    empty, lines = _kernel_table([cpu_op], steps=1)
    assert empty["kernels"] == 0 and "train.cuda_graphs=false" in lines[1]


def test_largest_batch_doubles_until_a_size_does_not_fit():
    fits_up_to = 32
    asked = []

    def try_batch(size):
        asked.append(size)
        return {"global_batch_size": size, "train_examples_per_second": 10.0 * size} if size <= fits_up_to else None

    found = largest_batch(try_batch, start=8, limit=1024)
    assert asked == [16, 32, 64]
    assert found["largest_fitting_batch"] == 32 and found["largest_fitting_batch_examples_per_second"] == 320.0
    assert [row["fits"] for row in found["larger_batches"]] == [True, True, False]
    assert not found["largest_batch_tried_fits"]
    capped = largest_batch(try_batch, start=8, limit=16)  # the limit, not memory, ended it
    assert capped["largest_fitting_batch"] == 16 and capped["largest_batch_tried_fits"]
    none = largest_batch(lambda size: None, start=8, limit=64)
    assert none["largest_fitting_batch"] == 8 and none["largest_fitting_batch_examples_per_second"] is None


def test_largest_batch_starts_where_memory_says_and_narrows_the_gap_after_a_miss():
    def fits_up_to(largest, asked):
        def try_batch(size):
            asked.append(size)
            return {"global_batch_size": size, "train_examples_per_second": float(size)} if size <= largest else None

        return try_batch

    asked = []  # a first guess too large: halve the gap until it closes
    found = largest_batch(fits_up_to(64, asked), start=8, limit=1024, first=5)
    assert asked == [256, 32, 64, 128]  # exponents 5, then the middles of 0-5, 2-5, 3-5
    assert found["largest_fitting_batch"] == 64 and not found["largest_batch_tried_fits"]
    assert [(row["global_batch_size"], row["fits"]) for row in found["larger_batches"]] == [
        (256, False),
        (32, True),
        (64, True),
        (128, False),
    ]
    asked = []  # a first guess that fits: on up from there
    found = largest_batch(fits_up_to(256, asked), start=8, limit=1024, first=3)
    assert asked == [64, 128, 256, 512] and found["largest_fitting_batch"] == 256
    asked = []  # the limit ends it, and no guess goes past it
    found = largest_batch(fits_up_to(4096, asked), start=8, limit=100, first=9)
    assert asked == [64] and found["largest_batch_tried_fits"]
    assert largest_batch(fits_up_to(4096, []), start=8, limit=15)["larger_batches"] == []


def test_the_first_size_tried_is_the_largest_the_measured_peak_scaled_up_fits():
    # HRM at 384 took 5.6 GiB on the H200 (139.8 GiB): 16x fits in 90% of it when memory grows with the batch.
    assert first_exponent(384, 16 * 384, peak_gib=5.6, capacity_gib=139.8) == 4
    assert first_exponent(768, 16 * 768, peak_gib=29.6, capacity_gib=139.8) == 2  # 118 GiB; 237 would not fit
    assert first_exponent(384, 2 * 384, peak_gib=5.6, capacity_gib=139.8) == 1  # the limit caps it
    assert first_exponent(768, 16 * 768, peak_gib=100.0, capacity_gib=139.8) == 1  # always one size up
    assert first_exponent(8, 1024, peak_gib=None, capacity_gib=None) == 1  # CPU: plain doubling


def test_a_child_out_of_memory_does_not_fit_and_any_other_failure_stops(monkeypatch):
    def finished(stderr):
        return lambda command, **_: subprocess.CompletedProcess(command, 1, "", stderr)

    try_batch = bench_in_child("exp.toml", ("train.lr=1e-3",), steps=2, warmup=1)
    monkeypatch.setattr(subprocess, "run", finished("torch.OutOfMemoryError: CUDA out of memory. Tried to..."))
    assert try_batch(1536) is None
    monkeypatch.setattr(subprocess, "run", finished("Traceback ...\nValueError: bad shape\n"))
    with pytest.raises(BatchSearchError, match="global batch 1536 failed .exit 1.: ValueError: bad shape"):
        try_batch(1536)


def test_bench_largest_batch_times_each_size_in_its_own_process(toy_registry, toy_env, tmp_path, monkeypatch):
    path = str(toy_experiment(tmp_path / "exp.toml"))
    monkeypatch.setenv("PYTHONPATH", toy_env["PYTHONPATH"])  # the children load the toy plugin too
    timing = ["--steps", "2", "--warmup", "1", "--eval-batches", "0"]
    result = CliRunner().invoke(main, ["bench", path, *timing, "--largest-batch", "--max-batch", "16"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output[result.output.index("{") :])
    assert figures["global_batch_size"] == 8
    (row,) = figures["larger_batches"]
    assert row["global_batch_size"] == 16 and row["fits"] and row["train_examples_per_second"] > 0
    assert figures["largest_fitting_batch"] == 16 and figures["largest_batch_tried_fits"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    refused = CliRunner().invoke(main, ["bench", path, *timing, "--largest-batch"])
    assert refused.exit_code == 2 and "without torchrun" in refused.output


def test_bench_largest_batch_keeps_its_own_figures_when_a_larger_size_fails(toy_registry, tmp_path, monkeypatch):
    path = str(toy_experiment(tmp_path / "exp.toml"))
    asked = []

    def failing_child(experiment, overrides, steps, warmup):
        def try_batch(size):
            asked.append(size)
            raise BatchSearchError(f"rr bench at global batch {size} failed (exit 1): ValueError: bad shape")

        return try_batch

    monkeypatch.setattr(batchsearch, "bench_in_child", failing_child)
    out = tmp_path / "figures.json"
    timing = ["--steps", "2", "--warmup", "1", "--eval-batches", "0", "--json-out", str(out)]
    result = CliRunner().invoke(main, ["bench", path, *timing, "--largest-batch"])
    assert result.exit_code == 1 and "bad shape" in result.output
    figures = json.loads(out.read_text())  # the batch of the experiment was timed: that is not lost
    assert figures["step_ms"] > 0 and "global batch 16 failed" in figures["largest_batch_error"]
    assert asked == [16]
    # No size beyond one epoch of the training set: it would repeat examples within a step.
    assert figures["largest_batch_limit"] == min(16 * 8, figures["train_examples_per_epoch"])

    path = str(toy_experiment(tmp_path / "exp.toml", global_batch_size=24))  # the toy's epoch: 32 examples
    asked.clear()
    result = CliRunner().invoke(main, ["bench", path, *timing, "--largest-batch"])
    assert result.exit_code == 0 and not asked
    assert "no larger batch to try: one epoch of the training set (32 examples) is less than twice 24" in result.output
