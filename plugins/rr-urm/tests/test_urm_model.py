"""URM on CPU with tiny configs: ConvSwiGLU locality, truncated backprop, eval scaling, ACT training."""

from __future__ import annotations

import pytest
import torch
from rr_urm.urm import URM, ConvSwiGLU, URMConfig

from rrcore.contracts.experiment import ACTConfig
from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import ModelContext
from rrcore.model.act import ACTModel
from rrcore.model.act_loss import ACTLossHead

VOCAB, SEQ_LEN, BATCH = 6, 8, 4


def tiny_context(batch_size: int = BATCH) -> ModelContext:
    metadata = DatasetMetadata(
        pad_id=0,
        ignore_label_id=0,
        blank_identifier_id=0,
        vocab_size=VOCAB,
        seq_len=SEQ_LEN,
        num_puzzle_identifiers=3,
        total_groups=3,
        mean_puzzle_examples=1.0,
        sets=["all"],
    )
    return ModelContext(metadata=metadata, batch_size=batch_size)


def tiny_config(**overrides) -> URMConfig:
    values = dict(
        hidden_size=32,
        num_heads=2,
        expansion=2.0,
        num_layers=2,
        H_cycles=2,
        L_cycles=2,
        puzzle_emb_ndim=32,
        attention_backend="sdpa",
    )
    return URMConfig(**{**values, **overrides})


def tiny_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(1, VOCAB, (BATCH, SEQ_LEN), generator=generator, dtype=torch.int32)
    # A fixed token permutation: every label is a function of its input token.
    labels = ((inputs - 1 + 2) % (VOCAB - 1) + 1).to(torch.int64)
    return {"inputs": inputs, "labels": labels, "puzzle_identifiers": torch.tensor([0, 1, 2, 1], dtype=torch.int32)}


def fresh_carry(model: URM, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return model.reset_carry(torch.ones(BATCH, dtype=torch.bool), model.initial_carry(batch))


# -- ConvSwiGLU --------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_conv_swiglu_mixes_only_the_kernel_neighbourhood(kernel_size):
    torch.manual_seed(0)
    mlp = ConvSwiGLU(hidden_size=16, expansion=2.0, kernel_size=kernel_size)
    x = torch.randn(2, 10, 16)
    out = mlp(x)
    assert out.shape == x.shape

    position = 4
    perturbed = x.clone()
    perturbed[:, position] += 1.0
    changed = (mlp(perturbed) - out).abs().amax(dim=(0, 2)) > 1e-6  # (L,)
    # Output t sees positions t - k//2 ... t + (k - 1 - k//2), so position p reaches these t:
    left = kernel_size // 2
    expected = torch.zeros(10, dtype=torch.bool)
    expected[position - (kernel_size - 1 - left) : position + left + 1] = True
    assert torch.equal(changed, expected)


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4])
def test_conv_swiglu_equals_a_depthwise_conv1d(kernel_size):
    """The shifted-sum form is the reference's conv1d (pad k//2 on both sides, first L outputs)."""
    torch.manual_seed(0)
    layer = ConvSwiGLU(16, 4.0, kernel_size)
    x = torch.randn(2, 7, 16)
    gate, up = layer.gate_up_proj(x).chunk(2, dim=-1)
    gated = (torch.nn.functional.silu(gate) * up).transpose(1, 2)
    padded = torch.nn.functional.pad(gated, (kernel_size // 2, kernel_size // 2))
    conv = torch.nn.functional.conv1d(padded, layer.conv_weight, layer.conv_bias, groups=gated.shape[1])
    expected = layer.down_proj(torch.nn.functional.silu(conv[..., : x.shape[1]]).transpose(1, 2))
    torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=1e-5)


def test_conv_swiglu_keeps_float32_conv_weights_under_bfloat16():
    mlp = ConvSwiGLU(hidden_size=16, expansion=2.0)
    out = mlp(torch.randn(2, 5, 16, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert mlp.conv_weight.dtype == torch.float32 and mlp.conv_bias.dtype == torch.float32
    out.float().sum().backward()
    assert mlp.conv_weight.grad.dtype == torch.float32


# -- truncated backpropagation through loops ---------------------------------------------


def count_backward_calls(model: URM) -> list[int]:
    calls = [0]
    model.blocks[0].register_full_backward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("H_cycles", [1, 3])
def test_gradient_flows_only_through_the_last_cycle(H_cycles):
    torch.manual_seed(0)
    model = URM(tiny_config(H_cycles=H_cycles, L_cycles=2), tiny_context())
    batch = tiny_batch()
    hidden = fresh_carry(model, batch)["hidden"].clone().requires_grad_(True)
    calls = count_backward_calls(model)
    _, outputs = model({"hidden": hidden}, batch)
    outputs["logits"].float().square().sum().backward()

    # The first block is applied H_cycles * L_cycles times but differentiated only L_cycles times.
    assert calls[0] == 2
    # The incoming state reaches the loss only when no cycle ran without gradient.
    if H_cycles == 1:
        assert hidden.grad is not None and hidden.grad.abs().sum() > 0
    else:
        assert hidden.grad is None


def test_new_carry_is_detached():
    model = URM(tiny_config(), tiny_context())
    batch = tiny_batch()
    carry, _ = model(fresh_carry(model, batch), batch)
    assert not carry["hidden"].requires_grad


# -- inference-time scaling --------------------------------------------------------------


def count_forward_calls(model: URM) -> list[int]:
    calls = [0]
    model.blocks[0].register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_eval_extra_cycles_apply_only_in_eval_mode():
    model = URM(tiny_config(H_cycles=2, L_cycles=3, eval_extra_H_cycles=2), tiny_context())
    calls = count_forward_calls(model)
    batch = tiny_batch()

    model.train()
    model(fresh_carry(model, batch), batch)
    assert calls[0] == 2 * 3

    calls[0] = 0
    model.eval()
    with torch.no_grad():
        model(fresh_carry(model, batch), batch)
    assert calls[0] == (2 + 2) * 3


def test_eval_extra_cycles_equal_more_act_steps():
    """16 ACT steps with one extra cycle each = 24 ACT steps at H_cycles = 2 (the paper's loops + 8),
    shown here on 2 steps + 1 extra cycle each = 3 steps."""
    torch.manual_seed(0)
    scaled = URM(tiny_config(H_cycles=2, eval_extra_H_cycles=1), tiny_context()).eval()
    plain = URM(tiny_config(H_cycles=2), tiny_context()).eval()
    plain.load_state_dict(scaled.state_dict())
    batch = tiny_batch()
    with torch.no_grad():
        carry = fresh_carry(scaled, batch)
        for _ in range(2):
            carry, scaled_outputs = scaled(carry, batch)
        carry = fresh_carry(plain, batch)
        for _ in range(3):
            carry, plain_outputs = plain(carry, batch)
    torch.testing.assert_close(scaled_outputs["logits"], plain_outputs["logits"])


# -- carry -------------------------------------------------------------------------------


def test_reset_carry_replaces_only_reset_rows():
    model = URM(tiny_config(), tiny_context())
    batch = tiny_batch()
    old = torch.randn(BATCH, model.embed_input.total_len, 32)
    reset = torch.tensor([True, False, True, False])
    new = model.reset_carry(reset, {"hidden": old})["hidden"]
    assert torch.equal(new[~reset], old[~reset])
    assert torch.equal(new[reset], model.init_hidden.expand_as(new[reset]))
    assert model.initial_carry(batch)["hidden"].shape == old.shape


# -- determinism and training ------------------------------------------------------------


def train(seed: int, steps: int, config: URMConfig | None = None) -> list[dict[str, float]]:
    """AdamW through the core's ACT loss head on one fixed batch; the metrics of every step."""
    torch.manual_seed(seed)
    model = ACTModel(
        URM(config or tiny_config(), tiny_context()), ACTConfig(halt_max_steps=2, halt_exploration_prob=0.0)
    )
    head = ACTLossHead(model)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=0.0)
    batch = tiny_batch()
    carry = head.initial_carry(batch)
    history = []
    for _ in range(steps):
        carry, loss, metrics, _, _ = head(carry, batch)
        (loss / BATCH).backward()
        optimizer.step()
        optimizer.zero_grad()
        carry = carry.detach()
        history.append({"loss": loss.item(), **{k: v.item() for k, v in metrics.items()}})
    return history


def test_same_seed_gives_same_model_and_training():
    first, second = train(seed=0, steps=3), train(seed=0, steps=3)
    assert first == second
    assert train(seed=1, steps=3) != first


def test_act_loss_head_training_learns_a_fixed_batch():
    history = train(seed=0, steps=30, config=tiny_config(H_cycles=2, L_cycles=1, num_layers=1))
    assert history[-1]["lm_loss"] < 0.15 * history[0]["lm_loss"]
    assert history[-1]["loss"] < 0.3 * history[0]["loss"]
    # Every row that halts at the last step is solved exactly.
    assert history[-1]["count"] > 0 and history[-1]["exact_accuracy"] == history[-1]["count"]


def test_recording_states_gives_hidden_after_every_application():
    model = URM(tiny_config(H_cycles=2, L_cycles=3), tiny_context()).eval()
    batch = tiny_batch()
    with torch.no_grad():
        plain_carry, plain = model(fresh_carry(model, batch), batch)
        with model.recording_states() as records:
            _, recorded = model(fresh_carry(model, batch), batch)
    assert [len(record["hidden"]) for record in records] == [6]  # H_cycles x L_cycles
    assert torch.equal(records[0]["hidden"][-1], plain_carry["hidden"])
    assert not torch.equal(records[0]["hidden"][0], records[0]["hidden"][1])
    assert torch.equal(plain["logits"], recorded["logits"])
