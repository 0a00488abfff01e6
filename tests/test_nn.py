"""Shared layers: init, losses, attention, the sparse puzzle embedding, the optimizers."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from rrcore.model.layers import (
    Attention,
    apply_rotary,
    attention,
    resolve_attention_backend,
    swiglu_width,
    trunc_normal_,
)
from rrcore.model.losses import log_stablemax, softmax_cross_entropy, stablemax_cross_entropy
from rrcore.model.puzzle_io import SparsePuzzleEmbedding
from rrcore.training.builtin import AdamAtan2Config, _make_adam_atan2
from rrcore.training.sign_sgd import SignSGD, _sign_sgd_rows


def test_trunc_normal_has_the_requested_std_and_bound():
    values = trunc_normal_(torch.empty(400_000), std=0.02)
    assert values.std().item() == pytest.approx(0.02, rel=0.01)
    pdf, mass = math.exp(-2) / math.sqrt(2 * math.pi), math.erf(2 / math.sqrt(2))
    base_std = 0.02 / math.sqrt(1 - 4 * pdf / mass)  # the normal that, cut at 2 sigma, has std 0.02
    assert values.abs().max().item() <= 2 * base_std * (1 + 1e-5)


def test_swiglu_width_rounds_up_to_256():
    assert swiglu_width(512, 4) == 1536
    assert swiglu_width(64, 4) == 256


def test_stablemax_matches_its_definition_and_ignores_label():
    logits = torch.tensor([[[2.0, -1.0, 0.0]], [[0.5, 0.5, -3.0]]])
    labels = torch.tensor([[0], [-100]])
    s = torch.tensor([3.0, 0.5, 1.0])
    assert stablemax_cross_entropy(logits, labels)[0, 0].item() == pytest.approx(-math.log(3.0 / s.sum()))
    assert stablemax_cross_entropy(logits, labels)[1, 0].item() == 0.0
    assert stablemax_cross_entropy(logits, labels).dtype == torch.float64
    assert torch.allclose(log_stablemax(logits.double()).exp().sum(-1), torch.ones(2, 1, dtype=torch.float64))


def test_softmax_cross_entropy_matches_torch():
    logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    labels[0, 1] = -100
    loss = softmax_cross_entropy(logits, labels)
    expected = torch.nn.functional.cross_entropy(logits[1], labels[1], reduction="none")
    assert torch.allclose(loss[1], expected) and loss[0, 1] == 0


def test_attention_sdpa_matches_manual_and_rotary_preserves_norm():
    q, k, v = torch.randn(3, 2, 6, 4, 8).unbind(0)  # (B, L, H, D)
    out = attention(q, k, v, backend="sdpa")
    weights = torch.softmax(torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(8), dim=-1)
    assert torch.allclose(out, torch.einsum("bhlm,bmhd->blhd", weights, v), atol=1e-5)
    half = torch.randn(6, 4)
    angles = torch.cat((half, half), dim=-1)  # channel i and i + D/2 rotate together, as RotaryEmbedding lays out
    rotated = apply_rotary(q, angles.cos(), angles.sin())
    assert torch.allclose(rotated.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    assert resolve_attention_backend("auto", torch.device("cpu")) == "sdpa"
    with pytest.raises(RuntimeError, match="flash-attn"):
        resolve_attention_backend("flash", torch.device("cpu"))


def test_attention_module_is_permutation_equivariant_without_positions():
    layer = Attention(16, num_heads=2, backend="sdpa")
    x = torch.randn(1, 5, 16)
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.allclose(layer(x)[:, perm], layer(x[:, perm]), atol=1e-5)


def test_sparse_embedding_gets_gradients_only_for_batch_rows_and_sign_sgd_updates_them():
    embedding = SparsePuzzleEmbedding(6, 4, batch_size=3)
    assert embedding.weights.abs().sum() == 0  # zero init
    ids = torch.tensor([1, 4, 1])
    out = embedding(ids)
    (out * torch.tensor([[1.0], [-2.0], [3.0]])).sum().backward()
    optimizer = SignSGD([embedding], lr=0.1, weight_decay=0.5)
    optimizer.step()
    weights = embedding.weights
    assert torch.allclose(weights[1], torch.full((4,), -0.1))  # grads 1 + 3 summed, sign +
    assert torch.allclose(weights[4], torch.full((4,), 0.1))
    assert weights[[0, 2, 3, 5]].abs().sum() == 0
    embedding.eval()
    assert torch.equal(embedding(torch.tensor([4])), weights[[4]])


def test_adam_atan2_step_matches_hand_computation():
    """Pins the update (weight decay lr*wd, atan2 with a=1, b=1), as adam-atan2-pytorch 0.4.1."""
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    param.grad = torch.tensor([0.5, 0.25])
    lr, wd, (beta1, beta2) = 0.1, 1.0, (0.9, 0.95)
    optimizer = _make_adam_atan2(
        [{"params": [param], "lr": lr, "weight_decay": wd, "betas": (beta1, beta2)}], AdamAtan2Config()
    )
    optimizer.step()
    m = (1 - beta1) * torch.tensor([0.5, 0.25]) / (1 - beta1)
    v = (1 - beta2) * torch.tensor([0.25, 0.0625]) / (1 - beta2)
    expected = torch.tensor([1.0, -2.0]) * (1 - lr * wd) - lr * torch.atan2(m, v.sqrt())
    assert torch.allclose(param.detach(), expected)
    assert not torch.allclose(param.detach(), torch.zeros(2))  # the old lr/init_lr*wd bug zeroed weights


def test_fused_adam_atan2_matches_the_eager_update_over_steps():
    """The compiled update (CUDA's path, here compiled for the CPU) follows the eager one while
    the learning rate changes every step, parameters of several shapes, one without decay."""
    from rrcore.training.adam_atan2 import AdamAtan2

    shapes = [(7, 5), (5,), (3, 2, 4)]
    runs = []
    for fused in (False, True):
        params = [
            torch.nn.Parameter(torch.randn(s, generator=torch.Generator().manual_seed(i))) for i, s in enumerate(shapes)
        ]
        groups = [{"params": params[:2], "weight_decay": 0.5}, {"params": params[2:], "weight_decay": 0.0}]
        optimizer = AdamAtan2(groups, lr=0.01, betas=(0.9, 0.95), fused=fused)
        grads = torch.Generator().manual_seed(1)
        for step in range(4):
            for group in optimizer.param_groups:
                group["lr"] = 0.01 * (step + 1)
            for p in params:
                p.grad = torch.randn(p.shape, generator=grads)
            optimizer.step()
        runs.append([p.detach().clone() for p in params])
        assert optimizer.state[params[0]]["steps"] == 4
    for eager, fused in zip(*runs):
        torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-6)


def test_fused_adam_atan2_resumes_from_its_state_dict_as_if_never_stopped():
    """The compiled update keeps its moments in flat buffers; a loaded state dict replaces
    the per-parameter tensors, and the next step must carry on from the loaded values."""
    from rrcore.training.adam_atan2 import AdamAtan2

    def make(seed: int = 0) -> tuple[list[torch.nn.Parameter], AdamAtan2]:
        g = torch.Generator().manual_seed(seed)
        params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(4, 3), (6,)]]
        return params, AdamAtan2(params, lr=0.05, weight_decay=0.1, fused=True)

    def steps(params: list[torch.nn.Parameter], optimizer: AdamAtan2, seeds: range) -> None:
        for seed in seeds:
            g = torch.Generator().manual_seed(100 + seed)
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            optimizer.step()

    straight, straight_opt = make()
    steps(straight, straight_opt, range(4))

    first, first_opt = make()
    steps(first, first_opt, range(2))
    saved = copy.deepcopy(first_opt.state_dict())
    assert saved["state"][0]["exp_avg"].shape == (4, 3)  # the per-parameter layout of the checkpoint
    resumed, resumed_opt = make(seed=1)
    steps(resumed, resumed_opt, range(7, 8))  # flat buffers exist before the load replaces the state
    with torch.no_grad():
        for r, f in zip(resumed, first):
            r.copy_(f)
    resumed_opt.load_state_dict(saved)
    steps(resumed, resumed_opt, range(2, 4))
    for a, b in zip(resumed, straight):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7)
    assert resumed_opt.state[resumed[1]]["steps"] == 4


def test_fused_adam_atan2_follows_a_changing_set_of_gradients_without_keeping_old_buffers():
    """A parameter without a gradient skips a step (its moments wait, its step count falls
    behind); the compiled update must match the eager one, and the flat buffers of sets no
    longer stepped together must not stay alive beside the current ones."""
    from rrcore.training.adam_atan2 import AdamAtan2

    runs = []
    for fused in (False, True):
        g = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(4, 3), (6,), (5,)]]
        optimizer = AdamAtan2(params, lr=0.05, weight_decay=0.1, fused=fused)
        grads = torch.Generator().manual_seed(1)
        for step in range(6):
            for i, p in enumerate(params):
                skip = i == 0 and step in (1, 2)
                p.grad = None if skip else torch.randn(p.shape, generator=grads)
            optimizer.step()
        runs.append(params)
        buffered = sum(f.exp_avg.numel() for f in optimizer._flat.values())
        assert buffered <= sum(p.numel() for p in params)
    for eager, fused in zip(*runs):
        torch.testing.assert_close(fused.detach(), eager.detach(), rtol=1e-5, atol=1e-6)
    assert optimizer.state[runs[1][0]]["steps"] == 4


def test_sparse_embedding_stays_trainable_after_moving_the_module():
    """.to(device) copies buffers; the batch rows must still be a leaf that gets .grad."""
    module = torch.nn.Module()
    module.emb = SparsePuzzleEmbedding(4, 2, batch_size=2)
    module.to(torch.float64)  # a conversion that copies, as .cuda() does
    assert module.emb.local_weights.is_leaf and module.emb.local_weights.requires_grad
    module.emb(torch.tensor([0, 3])).sum().backward()
    optimizer = SignSGD([module.emb], lr=0.5)
    optimizer.step()
    assert module.emb.weights[[0, 3]].eq(-0.5).all() and module.emb.weights[[1, 2]].eq(0).all()


def test_sign_sgd_rows_match_a_unique_based_reference():
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(50, 3, generator=generator)
    ids = torch.randint(0, 50, (40,), generator=generator)
    grad = torch.randn(40, 3, generator=generator)
    expected = weights.clone()
    unique_ids, inverse = ids.unique(return_inverse=True)
    summed = torch.zeros(len(unique_ids), 3).index_add_(0, inverse, grad)
    expected[unique_ids] = expected[unique_ids] * (1 - 0.1 * 0.5) - 0.1 * summed.sign()
    _sign_sgd_rows(weights, ids, grad, lr=0.1, weight_decay=0.5)
    assert torch.allclose(weights, expected)
