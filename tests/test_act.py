"""ACT: carry reset, halting, exploration, evaluation length, loss-head metrics."""

from __future__ import annotations

import torch
from torch import nn

from rrcore.contracts.experiment import ACTConfig
from rrcore.model.act import ACTModel
from rrcore.model.act_loss import ACTLossHead


class Scripted(nn.Module):
    """An inner model whose outputs the test dictates: counts calls in the carry."""

    def __init__(self, vocab: int = 4, seq_len: int = 3) -> None:
        super().__init__()
        self.vocab, self.seq_len = vocab, seq_len
        self.q_halt = torch.full((2,), -1.0)
        self.q_continue = torch.full((2,), 0.0)
        self.logits = torch.zeros(2, seq_len, vocab)
        self.weight = nn.Parameter(torch.zeros(()))

    def initial_carry(self, batch):
        return {"calls": torch.full((batch["inputs"].shape[0],), 99.0)}

    def reset_carry(self, reset, carry):
        return {"calls": torch.where(reset, 0.0, carry["calls"])}

    def forward(self, carry, batch):
        outputs = {
            "logits": self.logits + self.weight,
            "q_halt_logits": self.q_halt.clone() + self.weight,
            "q_continue_logits": self.q_continue.clone(),
        }
        return {"calls": carry["calls"] + 1}, outputs


def _batch(first: int = 1):
    return {
        "inputs": torch.tensor([[first, 2, 3], [first, 3, 1]]),
        "labels": torch.tensor([[1, 2, -100], [3, 3, 1]]),
        "puzzle_identifiers": torch.zeros(2, dtype=torch.int32),
    }


def test_carry_resets_only_halted_rows_and_takes_their_new_data():
    model = ACTModel(Scripted(), ACTConfig(halt_max_steps=4, halt_exploration_prob=0.0))
    carry = model.initial_carry(_batch())
    carry, _ = model(carry, _batch(1))
    assert carry.inner["calls"].tolist() == [1.0, 1.0] and carry.steps.tolist() == [1, 1]
    carry = carry._replace(halted=torch.tensor([True, False]))
    carry, _ = model(carry, _batch(7))
    assert carry.inner["calls"].tolist() == [1.0, 2.0]  # row 0 restarted
    assert carry.steps.tolist() == [1, 2]
    assert carry.current_data["inputs"][:, 0].tolist() == [7, 1]  # only row 0 took the new example


def test_halting_on_q_halt_max_steps_and_eval_running_all_steps():
    inner = Scripted()
    model = ACTModel(inner, ACTConfig(halt_max_steps=3, halt_exploration_prob=0.0))
    inner.q_halt = torch.tensor([1.0, -1.0])
    carry, _ = model(model.initial_carry(_batch()), _batch())
    assert carry.halted.tolist() == [True, False]
    carry, _ = model(carry, _batch())
    carry, _ = model(carry, _batch())
    assert carry.halted.tolist() == [True, True]  # row 1 hit halt_max_steps
    model.eval()
    carry = model.initial_carry(_batch())
    for step in range(3):
        carry, _ = model(carry, _batch())
        assert carry.halted.all().item() == (step == 2)  # evaluation ignores the Q-head


def test_q_continue_halting_and_bootstrapped_target():
    inner = Scripted()
    model = ACTModel(inner, ACTConfig(halt_max_steps=2, halt_exploration_prob=0.0, q_continue=True))
    inner.q_halt = torch.tensor([0.5, 0.5])
    inner.q_continue = torch.tensor([0.0, 2.0])
    carry, outputs = model(model.initial_carry(_batch()), _batch())
    assert carry.halted.tolist() == [True, False]
    expected = torch.sigmoid(torch.maximum(inner.q_halt, inner.q_continue))
    assert torch.allclose(outputs["target_q_continue"], expected)
    carry, outputs = model(carry, _batch())  # last step: target is the next q_halt alone
    assert torch.allclose(outputs["target_q_continue"][1], torch.sigmoid(inner.q_halt[1]))


def test_exploration_delays_halting_and_is_rank_invariant():
    inner = Scripted()
    inner.q_halt = torch.ones(2)
    config = ACTConfig(halt_max_steps=8, halt_exploration_prob=1.0)
    model = ACTModel(inner, config, generator=torch.Generator().manual_seed(0))
    carry, _ = model(model.initial_carry(_batch()), _batch())
    assert not carry.halted.any()  # every row must run at least 2 steps
    # Rows 2..3 of a global batch of 4 drawn on "rank 1" equal the same rows drawn on one rank.
    whole = ACTModel(inner, config, generator=torch.Generator().manual_seed(5), global_batch_size=4)
    half = ACTModel(inner, config, generator=torch.Generator().manual_seed(5), global_batch_size=4)
    assert torch.equal(
        whole.exploration(4, torch.device("cpu"))[2:], half.exploration(2, torch.device("cpu"), row_offset=2)
    )


def test_loss_head_metrics_count_halted_rows():
    inner = Scripted()
    inner.logits = torch.zeros(2, 3, 4)
    inner.logits[0, 0, 1] = inner.logits[0, 1, 2] = 5.0  # row 0 all correct (position 2 ignored)
    inner.logits[1, :, 3] = 5.0  # row 1: positions 0, 1 correct, position 2 wrong
    inner.q_halt = torch.tensor([2.0, 2.0])
    head = ACTLossHead(ACTModel(inner, ACTConfig(halt_max_steps=4, halt_exploration_prob=0.0)))
    carry, loss, metrics, outputs, all_halted = head(head.initial_carry(_batch()), _batch())
    assert all_halted.item()
    assert metrics["count"].item() == 2
    assert metrics["exact_accuracy"].item() == 1
    assert abs(metrics["accuracy"].item() - (1 + 2 / 3)) < 1e-6
    assert metrics["q_halt_accuracy"].item() == 1  # predicted "correct" for both, right for row 0 only
    assert metrics["steps"].item() == 2
    assert loss.requires_grad and outputs["preds"][0, :2].tolist() == [1, 2]
    expected_q = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([2.0, 2.0]), torch.tensor([1.0, 0.0]), reduction="sum"
    )
    assert torch.allclose(metrics["q_halt_loss"], expected_q)


def test_whole_act_step_traces_as_one_graph():
    """What the trainer compiles — reset, inner step, halting with exploration, the
    bootstrapped Q target and the loss — has no graph break (``fullgraph`` fails on one)."""
    from rrcore.model.layers import PostNormBlock
    from rrcore.model.puzzle_io import ReasoningHeads

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(4, 8)
            self.block = PostNormBlock(8, 2, 2.0, attention_backend="auto")
            self.heads = ReasoningHeads(8, 4, puzzle_emb_len=0)
            self.register_buffer("init", torch.zeros(8))

        def initial_carry(self, batch):
            return {"z": torch.zeros(batch["inputs"].shape[0], 3, 8)}

        def reset_carry(self, reset, carry):
            return {"z": torch.where(reset.view(-1, 1, 1), self.init, carry["z"])}

        def forward(self, carry, batch):
            z = self.block(carry["z"] + self.embed(batch["inputs"]))
            return {"z": z.detach()}, self.heads(z)

    config = ACTConfig(halt_max_steps=4, halt_exploration_prob=0.5, q_continue=True)
    head = ACTLossHead(ACTModel(Tiny(), config, generator=torch.Generator().manual_seed(0)))
    step = torch.compile(head, fullgraph=True, backend="eager")
    batch = _batch()
    carry = head.initial_carry(batch)
    for _ in range(2):
        carry, loss, _, _, _ = step(carry, batch, head.model.exploration(2, torch.device("cpu")))
        loss.backward()
    head.eval()
    step(carry.detach(), batch)
