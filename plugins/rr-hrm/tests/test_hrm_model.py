"""Behaviour of the HRM inner recurrence, alone and under the core's ACT."""

from __future__ import annotations

import pytest
import torch
from rr_hrm import HRM, HRMConfig

from rrcore.contracts.experiment import ACTConfig
from rrcore.contracts.metadata import DatasetMetadata
from rrcore.contracts.protocols import ModelContext
from rrcore.model.act import ACTModel
from rrcore.model.act_loss import ACTLossHead

BATCH, SEQ_LEN, VOCAB = 4, 8, 6


def tiny_config(**overrides) -> HRMConfig:
    values = dict(
        hidden_size=32,
        num_heads=2,
        expansion=2.0,
        H_layers=1,
        L_layers=1,
        H_cycles=2,
        L_cycles=2,
        puzzle_emb_ndim=32,
        attention_backend="sdpa",
    )
    return HRMConfig(**{**values, **overrides})


def tiny_model(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> HRM:
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
    torch.manual_seed(seed)
    return HRM(tiny_config(**overrides), ModelContext(metadata, BATCH, dtype))


def tiny_batch(seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(1, VOCAB, (BATCH, SEQ_LEN), generator=generator, dtype=torch.int32)
    # A learnable task: predict the next token id (mod vocab), ignoring position 0.
    labels = (inputs.to(torch.int64) % (VOCAB - 1)) + 1
    labels[:, 0] = -100
    return {"inputs": inputs, "labels": labels, "puzzle_identifiers": torch.tensor([0, 1, 2, 1], dtype=torch.int32)}


def fresh_carry(model: HRM, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return model.reset_carry(torch.ones(BATCH, dtype=torch.bool), model.initial_carry(batch))


def randomise_q_head(model: HRM, seed: int = 2) -> None:
    """The Q-head starts at zero weight, bias -5 (constant logits); give it some signal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        q_head = model.heads.q_head
        q_head.weight.copy_(torch.randn(q_head.weight.shape, generator=generator))
        q_head.bias.zero_()


@pytest.mark.parametrize(("dtype", "pos_encodings"), [(torch.float32, "rope"), (torch.bfloat16, "learned")])
def test_shapes_and_dtypes(dtype: torch.dtype, pos_encodings: str) -> None:
    model = tiny_model(dtype=dtype, pos_encodings=pos_encodings)
    batch = tiny_batch()
    carry, outputs = model(fresh_carry(model, batch), batch)

    prefix = 1  # puzzle_emb_ndim 32 fills one position of hidden_size 32
    for name in ("z_H", "z_L"):
        assert carry[name].shape == (BATCH, prefix + SEQ_LEN, 32)
        assert carry[name].dtype == dtype
        assert not carry[name].requires_grad  # gradients never cross ACT steps
    assert outputs["logits"].shape == (BATCH, SEQ_LEN, VOCAB)
    assert outputs["logits"].dtype == dtype
    for name in ("q_halt_logits", "q_continue_logits"):
        assert outputs[name].shape == (BATCH,)
        assert outputs[name].dtype == torch.float32
    assert model.predicts_q_continue


def test_only_the_final_L_and_H_updates_run_with_gradient() -> None:
    model = tiny_model(H_cycles=3, L_cycles=2)
    calls: dict[str, list[bool]] = {"L": [], "H": []}
    model.L_level.register_forward_hook(lambda *_: calls["L"].append(torch.is_grad_enabled()))
    model.H_level.register_forward_hook(lambda *_: calls["H"].append(torch.is_grad_enabled()))
    batch = tiny_batch()
    model(fresh_carry(model, batch), batch)

    assert calls["L"] == [False] * 5 + [True]
    assert calls["H"] == [False] * 2 + [True]


def test_parameter_gradients_equal_those_of_the_last_updates_alone() -> None:
    """If any earlier update carried gradient, the model's parameter gradients would
    pick up extra paths and differ from a recomputation of the final L and H updates."""
    model = tiny_model()
    batch = tiny_batch()
    carry = fresh_carry(model, batch)
    with model.recording_states() as records:
        _, outputs = model(carry, batch)
    (outputs["logits"].sum() + outputs["q_halt_logits"].sum()).backward()
    model_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    # The states entering the final updates: z_L after the L_cycles*H_cycles-1 th update,
    # z_H after the H_cycles-1 th.
    z_L_before, z_H_before = records[0]["z_L"][-2], records[0]["z_H"][-2]
    rotary = model.embed_input.rotary()
    x = model.embed_input(batch["inputs"], batch["puzzle_identifiers"])
    z_L = model.L_level(z_L_before, z_H_before + x, rotary)
    z_H = model.H_level(z_H_before, z_L, rotary)
    manual = model.heads(z_H)
    (manual["logits"].sum() + manual["q_halt_logits"].sum()).backward()

    for name, p in model.named_parameters():
        if name.startswith("heads.q_head"):
            continue  # zero-initialised weight: its gradient matches trivially either way
        torch.testing.assert_close(model_grads[name], p.grad, msg=f"gradient of {name}")
        assert p.grad.abs().sum() > 0, name


def test_q_continue_target_is_the_sigmoid_of_the_next_steps_q_values() -> None:
    # Without a puzzle prefix the Q-head reads the first token, so Q values differ by row;
    # exploration with halt_max_steps 2 makes every row run exactly steps 1, 2, 1, 2.
    model = tiny_model(puzzle_emb_ndim=0)
    randomise_q_head(model)
    act = ACTModel(model, ACTConfig(halt_max_steps=2, halt_exploration_prob=1.0, q_continue=True)).train()
    batch = tiny_batch()
    carry = act.initial_carry(batch)
    picked = torch.zeros(3, dtype=torch.bool)  # last step; max was halt; max was continue
    for _ in range(4):
        carry, outputs = act(carry, batch)
        with torch.no_grad():  # the paper's target: one more forward from the new carry
            _, following = model(carry.inner, carry.current_data)
        next_halt, next_continue = following["q_halt_logits"], following["q_continue_logits"]
        is_last = carry.steps >= 2
        expected = torch.sigmoid(torch.where(is_last, next_halt, torch.maximum(next_halt, next_continue)))
        torch.testing.assert_close(outputs["target_q_continue"], expected)
        picked |= torch.stack(
            [
                is_last.any(),
                (~is_last & (next_halt > next_continue)).any(),
                (~is_last & (next_continue > next_halt)).any(),
            ]
        )
    assert picked.all()  # every branch of the target was exercised


def test_reset_carry_replaces_only_halted_rows() -> None:
    model = tiny_model(dtype=torch.bfloat16)
    batch = tiny_batch()
    carry = {name: torch.randn(value.shape).to(torch.bfloat16) for name, value in model.initial_carry(batch).items()}
    reset = torch.tensor([True, False, True, False])
    new = model.reset_carry(reset, carry)

    for name, init in (("z_H", model.H_init), ("z_L", model.L_init)):
        assert new[name].dtype == torch.bfloat16
        assert torch.equal(new[name][~reset], carry[name][~reset])
        assert torch.equal(new[name][reset], init.to(torch.bfloat16).expand_as(new[name][reset]))
    assert not torch.equal(model.H_init, model.L_init)


def run_act_steps(seed: int, steps: int = 3) -> list[torch.Tensor]:
    model = tiny_model(seed=seed)
    act = ACTModel(model, ACTConfig(halt_max_steps=4, halt_exploration_prob=0.5, q_continue=True)).train()
    act.exploration_generator = torch.Generator().manual_seed(seed)
    head = ACTLossHead(act)
    batch = tiny_batch()
    carry = head.initial_carry(batch)
    losses = []
    for _ in range(steps):
        carry, loss, _, outputs, _ = head(carry, batch)
        losses.append(torch.cat([loss.detach().view(1), outputs["logits"].detach().flatten(), carry.steps.float()]))
    return losses


def test_same_seed_gives_identical_runs() -> None:
    first, second = run_act_steps(seed=0), run_act_steps(seed=0)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], run_act_steps(seed=1)[0])


def test_recording_states_counts_updates_and_leaves_outputs_unchanged() -> None:
    model = tiny_model(H_cycles=3, L_cycles=2).eval()
    batch = tiny_batch()
    carry = fresh_carry(model, batch)
    with torch.no_grad():
        plain_carry, plain = model(carry, batch)
        with model.recording_states() as records:
            recorded_carry, recorded = model(carry, batch)
            model(recorded_carry, batch)
        model(carry, batch)  # after the block nothing more is recorded

    assert len(records) == 2  # one record per forward call (ACT step)
    assert [len(r["z_L"]) for r in records] == [6, 6]
    assert [len(r["z_H"]) for r in records] == [3, 3]
    assert not model.record_states
    for name in ("logits", "q_halt_logits", "q_continue_logits"):
        assert torch.equal(plain[name], recorded[name])
    assert torch.equal(records[0]["z_H"][-1], plain_carry["z_H"])
    assert torch.equal(records[0]["z_L"][-1], plain_carry["z_L"])
    assert not torch.equal(records[0]["z_L"][0], records[0]["z_L"][1])


def test_compiles_as_one_graph_without_host_syncs() -> None:
    """fullgraph tracing fails on any graph break, e.g. ``.item()`` or data-dependent Python."""
    model = tiny_model()
    batch = tiny_batch()
    carry = fresh_carry(model, batch)
    _, expected = model(carry, batch)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    _, outputs = compiled(carry, batch)
    torch.testing.assert_close(outputs["logits"], expected["logits"])


def test_adamw_steps_through_the_act_loss_reduce_it() -> None:
    model = tiny_model(puzzle_emb_ndim=0)
    act = ACTModel(model, ACTConfig(halt_max_steps=2, halt_exploration_prob=0.0, q_continue=True)).train()
    head = ACTLossHead(act)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    batch = tiny_batch()
    carry = head.initial_carry(batch)
    losses = []
    for _ in range(40):
        carry, loss, metrics, _, _ = head(carry, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(metrics["lm_loss"].item())
    assert sum(losses[-4:]) < 0.5 * sum(losses[:4])


def test_eval_extra_cycles_think_longer_only_in_eval_mode() -> None:
    """``eval_extra_H_cycles`` adds H cycles (with their L cycles) per ACT step in eval mode
    only: two steps of H_cycles 2 + 1 extra equal three steps of H_cycles 2."""
    scaled = tiny_model(eval_extra_H_cycles=1)
    plain = tiny_model()
    plain.load_state_dict(scaled.state_dict())
    batch = tiny_batch()
    torch.testing.assert_close(
        scaled(fresh_carry(scaled, batch), batch)[1]["logits"], plain(fresh_carry(plain, batch), batch)[1]["logits"]
    )
    scaled.eval()
    plain.eval()
    with torch.no_grad():
        carry = fresh_carry(scaled, batch)
        for _ in range(2):
            carry, scaled_outputs = scaled(carry, batch)
        carry = fresh_carry(plain, batch)
        for _ in range(3):
            carry, plain_outputs = plain(carry, batch)
    torch.testing.assert_close(scaled_outputs["logits"], plain_outputs["logits"])
