"""``rr bench --profile``: the table of where a step's time goes, and the timeline."""

from __future__ import annotations

import gzip
import json
from types import SimpleNamespace

import torch
from click.testing import CliRunner
from toy_helpers import toy_experiment

from rrcore.cli import main
from rrcore.profiling import _kernel_table, kernel_kind


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
