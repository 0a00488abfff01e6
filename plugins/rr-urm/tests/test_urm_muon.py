"""The ``muon`` optimizer: orthogonalised steps for matrices, AdamW for the rest, one lr schedule."""

from __future__ import annotations

import torch
from rr_urm.muon import MuonConfig, MuonWithAdamW


def group(params, lr=0.02, weight_decay=0.0, **extra):
    return {"params": params, "lr": lr, "weight_decay": weight_decay, "betas": (0.9, 0.95), **extra}


def test_muon_step_is_orthogonalised():
    torch.manual_seed(0)
    # A gradient with singular values from 100 down to 1: a plain step would follow the top direction.
    left, _ = torch.linalg.qr(torch.randn(8, 8))
    right, _ = torch.linalg.qr(torch.randn(16, 8))
    gradient = left @ torch.diag(torch.logspace(2, 0, 8)) @ right.T  # (8, 16)
    weight = torch.nn.Parameter(torch.zeros(8, 16))
    lr = 0.1
    optimizer = MuonWithAdamW([group([weight], lr=lr)], MuonConfig(adjust_lr="original"))
    weight.grad = gradient.clone()
    optimizer.step()

    singular_values = torch.linalg.svdvals(-weight.detach() / lr)
    # Newton-Schulz (5 quintic steps, bf16) maps every singular value into roughly [0.5, 1.5].
    assert singular_values.min() > 0.5 and singular_values.max() < 1.5
    # Same singular directions as the gradient: the step is U V^T up to that spread.
    alignment = torch.linalg.svdvals(left.T @ (-weight.detach() / lr) @ right)
    torch.testing.assert_close(alignment, singular_values, atol=1e-2, rtol=1e-2)  # bf16 iteration


def test_muon_minimises_a_least_squares_problem():
    torch.manual_seed(0)
    inputs = torch.randn(64, 8)
    targets = inputs @ torch.randn(8, 4) + torch.randn(4)
    weight = torch.nn.Parameter(torch.zeros(4, 8))
    bias = torch.nn.Parameter(torch.zeros(4))
    optimizer = MuonWithAdamW([group([weight, bias], lr=0.05)], MuonConfig(adjust_lr="original"))

    def loss_fn():
        return (inputs @ weight.T + bias - targets).square().mean()

    initial = loss_fn().item()
    for _ in range(150):
        optimizer.zero_grad()
        loss_fn().backward()
        optimizer.step()
    assert loss_fn().item() < 0.05 * initial
    assert optimizer.muon.param_groups[0]["params"] == [weight]
    assert optimizer.adamw.param_groups[0]["params"] == [bias]
    assert bias.detach().abs().sum() > 0  # the AdamW part moved too


def test_named_embeddings_and_heads_stay_on_adamw():
    weight, embedding, kernel = (torch.nn.Parameter(torch.randn(*shape)) for shape in [(4, 4), (10, 4), (4, 1, 2)])
    named = [
        ("blocks.0.mlp.down_proj.weight", weight),
        ("embed_input.embed_tokens.weight", embedding),
        ("blocks.0.mlp.conv_weight", kernel),
    ]
    optimizer = MuonWithAdamW([group(named)])
    muon_groups = [g for g in optimizer.param_groups if g["use_muon"]]
    adamw_groups = [g for g in optimizer.param_groups if not g["use_muon"]]
    assert muon_groups[0]["params"] == [weight]
    assert adamw_groups[0]["params"] == [embedding, kernel]


def test_lr_schedule_reaches_both_parts_after_a_state_reload():
    weight, bias = torch.nn.Parameter(torch.randn(4, 4)), torch.nn.Parameter(torch.randn(4))
    optimizer = MuonWithAdamW([group([weight, bias])])
    (weight.sum() + bias.sum()).backward()
    optimizer.step()
    reloaded = MuonWithAdamW([group([weight, bias])])
    reloaded.load_state_dict(optimizer.state_dict())
    for param_group in reloaded.param_groups:
        param_group["lr"] = 0.0  # what the core's warm-up does at step 0
    before = weight.detach().clone(), bias.detach().clone()
    reloaded.step()
    assert torch.equal(weight.detach(), before[0]) and torch.equal(bias.detach(), before[1])
    assert "momentum_buffer" in reloaded.muon.state[weight]


def test_the_core_counts_its_parameter_groups_when_resuming():
    """``rr run --resume`` compares the saved optimizer's groups with the new one's
    (:meth:`rrcore.training.optim.Optimizers.group_sizes`); muon's state holds two inner optimizers'."""
    from rrcore.training.optim import LRSchedule, Optimizers

    weight, bias = torch.nn.Parameter(torch.randn(4, 4)), torch.nn.Parameter(torch.randn(4))
    optimizer = MuonWithAdamW([group([weight, bias])])
    optimizers = Optimizers({"model": (optimizer, 0.02)}, [weight, bias], LRSchedule(0, 10))
    (weight.sum() + bias.sum()).backward()
    optimizers.step(0)
    assert optimizers.group_sizes() == {"model": [1, 1]}  # Muon's matrix, then AdamW's vector
    assert optimizers.group_sizes(optimizers.state_dict()) == optimizers.group_sizes()
    # A saved muon with another split of parameters reads as other groups.
    other = MuonWithAdamW([group([weight, torch.nn.Parameter(torch.randn(4, 4)), bias])])
    assert optimizers.group_sizes({"model": other.state_dict()}) == {"model": [2, 1]}
