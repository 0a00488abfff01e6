"""CUDA-only checks (skipped on CPU): attention backends agree, the trainer's step has
no host synchronisation, compiled training runs with puzzle embeddings."""

from __future__ import annotations

import pytest
import torch
from toy_helpers import toy_experiment

from rrcore.config import load_experiment
from rrcore.nn import _flash_attn_func, attention
from rrcore.trainer import Trainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.skipif(_flash_attn_func() is None, reason="flash-attn is not installed")
def test_flash_and_sdpa_agree_in_bf16():
    q, k, v = torch.randn(3, 4, 97, 8, 64, device="cuda", dtype=torch.bfloat16).unbind(0)
    torch.testing.assert_close(attention(q, k, v, backend="flash"), attention(q, k, v, backend="sdpa"),
                               atol=2e-2, rtol=2e-2)


def test_training_step_never_waits_for_the_gpu(toy_registry, tmp_path):
    experiment = load_experiment(toy_experiment(tmp_path / "exp.toml", compile='"on"'),
                                 ["run.device='cuda'", "train.grad_clip=1.0", "train.ema=true"])
    trainer = Trainer(experiment)
    assert trainer.train_data.on_device
    batches = trainer.train_data.train_batches()
    sums: dict[str, torch.Tensor] = {}
    for _ in range(3):  # compile and allocate first
        trainer.train_step(next(batches)[1], sums)
    table = trainer.model.puzzle_emb.weights.clone()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            _, batch = next(batches)
            trainer.train_step(batch, sums)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert not torch.equal(table, trainer.model.puzzle_emb.weights)  # sign-SGD ran on the GPU
    assert torch.isfinite(sums["lm_loss"]).item()
