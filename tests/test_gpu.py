"""CUDA-only checks (skipped on CPU): attention backends agree; the compiled ACT step of
every bundled architecture is one graph that never recompiles, never waits for the GPU,
and computes what the eager step computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gradient_helpers import ARCHITECTURES, EXAMPLES, gradient_differences
from toy_helpers import toy_experiment

from rrcore.contracts.config import load_experiment
from rrcore.model.layers import _FLASH_ATTN_FUNC, attention
from rrcore.tools.benchmark import _compile_counters
from rrcore.training.loop import Trainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.skipif(_FLASH_ATTN_FUNC is None, reason="flash-attn is not installed")
def test_flash_and_sdpa_agree_in_bf16():
    q, k, v = torch.randn(3, 4, 97, 8, 64, device="cuda", dtype=torch.bfloat16).unbind(0)
    torch.testing.assert_close(
        attention(q, k, v, backend="flash"), attention(q, k, v, backend="sdpa"), atol=2e-2, rtol=2e-2
    )


def test_training_step_never_waits_for_the_gpu(toy_registry, tmp_path):
    experiment = load_experiment(
        toy_experiment(tmp_path / "exp.toml", compile='"on"'),
        ["run.device='cuda'", "train.grad_clip=1.0", "train.ema=true", "act.q_continue=true"],
    )
    trainer = Trainer(experiment)
    assert trainer.run.train_data.on_device and trainer.run.step_fn.cuda_graphs
    batches = trainer.run.train_data.train_batches()
    sums: dict[str, torch.Tensor] = {}
    for _ in range(3):  # compile and allocate first
        trainer.train_step(next(batches)[1], sums)
    table = trainer.run.model.puzzle_emb.weights.clone()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            _, batch = next(batches)
            trainer.train_step(batch, sums)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert not torch.equal(table, trainer.run.model.puzzle_emb.weights)  # sign-SGD ran on the GPU
    assert torch.isfinite(sums["lm_loss"]).item()


def _trainer(name: str, tmp_path: Path, compile: str, *extra: str) -> Trainer:
    example, overrides = ARCHITECTURES[name]
    experiment = load_experiment(
        EXAMPLES / example,
        [
            *overrides,
            "run.device='cuda'",
            f"train.compile='{compile}'",
            "train.ema=true",
            "data.train_size=200",
            "data.test_size=64",
            "train.eval_global_batch_size=32",
            *extra,
        ],
    )
    return Trainer(experiment, run_dir=tmp_path / name / compile)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_compiled_step_is_one_graph_and_never_recompiles(bundled_registry, tmp_path, name):
    trainer = _trainer(name, tmp_path, "on")
    batches = trainer.run.train_data.train_batches()
    sums: dict[str, torch.Tensor] = {}
    start = _compile_counters()
    for _ in range(3):
        trainer.train_step(next(batches)[1], sums)
    trainer.evaluate(tmp_path / "eval")
    warm = _compile_counters()
    assert warm["graphs_compiled"] >= start["graphs_compiled"] + 2, "training and evaluation were not compiled"
    assert warm["graph_breaks"] == start["graph_breaks"], "the ACT step breaks the graph"
    assert warm["cudagraph_skips"] == start["cudagraph_skips"], "CUDA-graph capture was skipped"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(20):
            trainer.train_step(next(batches)[1], sums)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer.evaluate(tmp_path / "eval")
    assert _compile_counters() == warm, "recompiled after warm-up"


@pytest.mark.parametrize("name", ["trm-mlp", "trm-att", "hrm", "urm"])
def test_compiled_and_eager_steps_agree(bundled_registry, tmp_path, name):
    """Same seed, same batches: the compiled (bf16) step tracks the eager (bf16) one."""
    losses = {}
    start = _compile_counters()
    for compile in ("off", "on"):
        torch.manual_seed(0)
        trainer = _trainer(name, tmp_path, compile)
        batches = trainer.run.train_data.train_batches()
        steps = []
        for _ in range(5):
            sums: dict[str, torch.Tensor] = {}
            trainer.train_step(next(batches)[1], sums)
            steps.append(float(sums["lm_loss"]) / trainer.run.experiment.train.global_batch_size)
        losses[compile] = steps
    assert _compile_counters()["graphs_compiled"] > start["graphs_compiled"]
    torch.testing.assert_close(losses["on"], losses["off"], rtol=3e-2, atol=1e-3)


@pytest.mark.parametrize("name", ["trm-mlp", "trm-att", "hrm", "urm"])
def test_compiled_and_eager_gradients_agree(bundled_registry, tmp_path, name):
    """Every parameter's gradient of one step, compiled against eager, within bf16 noise.
    Losses alone missed gradients 45% off (tests/test_compiled_gradients.py checks the
    same in float32 on CPU, to 1e-3)."""
    differences = gradient_differences(_trainer(name, tmp_path, "off").run, "inductor")
    wrong = {key: round(d, 3) for key, d in differences.items() if d > 0.1}
    assert not wrong, f"compiled gradients differ from eager ones (relative): {wrong}"


FAST_RECIPE_PARTS = [
    "model.gated_norm=true",
    "model.mlp_t_norm='channels'",
    "loss.label_smoothing=0.2",
    "loss.q_loss_weight=0.05",
    "loss.later_step_weight=0.9",
    "data.num_aug=0",
    "data.online_augment=true",
    "optimizer.plugin='adamw'",
    "optimizer.groups.hidden.plugin='muon_matrices'",
    "optimizer.groups.hidden.params='hidden_matrices'",
    "optimizer.groups.hidden.lr=0.02",
    "optimizer.groups.hidden.momentum=0.6",
    "optimizer.groups.hidden.ns_steps=3",
    "train.grad_clip=1.0",
    "train.lr_min_ratio=0.0",
    "train.ema_start_step=2",
    "train.ema_rate=0.9",
]


def test_fast_recipe_step_is_one_graph_and_never_waits(bundled_registry, tmp_path):
    """The fast Sudoku recipe's options (examples/sudoku-fast-trm.toml) on the 4x4 demo: the
    augmentation drawn on the GPU, Muon's group, the gated-norm SwiGLU, label smoothing and the
    EMA's start keep the step one graph that never recompiles and never waits for the GPU."""
    trainer = _trainer("trm-mlp", tmp_path, "on", *FAST_RECIPE_PARTS)
    assert set(trainer.run.optimizers.parts) >= {"model", "hidden"}
    batches = trainer.run.train_data.train_batches()
    sums: dict[str, torch.Tensor] = {}
    start = _compile_counters()
    for _ in range(4):  # compile; the EMA starts averaging at step 2
        trainer.train_step(next(batches)[1], sums)
    warm = _compile_counters()
    assert warm["graph_breaks"] == start["graph_breaks"], "the ACT step breaks the graph"
    assert warm["cudagraph_skips"] == start["cudagraph_skips"], "CUDA-graph capture was skipped"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(10):
            trainer.train_step(next(batches)[1], sums)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert _compile_counters() == warm, "recompiled after warm-up"
    assert torch.isfinite(sums["lm_loss"]).item()


def test_depth_curriculum_compiles_once_per_phase(bundled_registry, tmp_path):
    """Three phases of (H_cycles, L_cycles): each compiles its step once, and steps of a
    phase seen before (here the last one, again) compile nothing."""
    curriculum = "train.curriculum=[{until_step=3, model={H_cycles=1, L_cycles=1}}, {until_step=6, model={L_cycles=1}}]"
    trainer = _trainer("trm-mlp", tmp_path, "on", curriculum)
    batches = trainer.run.train_data.train_batches()
    sums: dict[str, torch.Tensor] = {}
    compiled = []
    for step in range(12):
        trainer.run.use_phase(step)
        trainer.train_step(next(batches)[1], sums)
        compiled.append(_compile_counters()["graphs_compiled"])
    assert trainer.run.model.config.H_cycles == trainer.run.experiment.model.config.H_cycles
    new_graphs = [b - a for a, b in zip(compiled, compiled[1:])]
    # A compile happens at the first step of each phase (steps 3 and 6) and nowhere else.
    assert [i + 1 for i, n in enumerate(new_graphs) if n] == [3, 6], new_graphs
