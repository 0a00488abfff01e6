"""The models inside the core's ACT wrapper and loss head: they train, and counts match the papers."""

from __future__ import annotations

import pytest
import torch
from rr_trm.params import count_parameters, paper_parameter_counts
from rr_trm.totrm import ToTRM, ToTRMConfig
from rr_trm.transformer import Transformer, TransformerConfig
from rr_trm.trm import TRM, TRMConfig

from rrcore.api import model_context
from rrcore.contracts.experiment import ACTConfig
from rrcore.model.act import ACTModel
from rrcore.model.act_loss import ACTLossHead
from rrcore.model.layers import swiglu_width

BATCH, SEQ, VOCAB = 8, 4, 5
TINY = dict(hidden_size=32, num_heads=2, expansion=2.0, puzzle_emb_ndim=32, puzzle_emb_len=1)


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy machine the
    threads' spin-waiting makes these tests many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(kind: str):
    context = model_context(VOCAB, SEQ, num_puzzle_identifiers=BATCH, batch_size=BATCH)
    if kind == "transformer":
        return Transformer(TransformerConfig(**TINY, num_layers=2), context)
    keys = dict(TINY, L_layers=1, H_cycles=2, L_cycles=2)
    if kind == "totrm":
        return ToTRM(ToTRMConfig(**keys, tree_branching_steps=1, tree_merge="learned_weighted"), context)
    return TRM(TRMConfig(**keys), context)


def first_step_loss(head: ACTLossHead, batch) -> torch.Tensor:
    carry = head.initial_carry(batch)
    _, loss, _, _, _ = head(carry, batch)
    return loss


@pytest.mark.parametrize("kind", ["trm", "totrm", "transformer"])
def test_training_in_act_wrapper_reduces_the_loss(kind):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(1, VOCAB, (BATCH, SEQ), generator=generator, dtype=torch.int32)
    # The task: output each sequence reversed, which needs information across positions.
    batch = {
        "inputs": inputs,
        "labels": inputs.flip(-1).to(torch.int64),
        "puzzle_identifiers": torch.arange(BATCH, dtype=torch.int32),
    }
    model = ACTModel(make_model(kind), ACTConfig(halt_max_steps=2, halt_exploration_prob=0.1))
    model.exploration_generator = torch.Generator().manual_seed(0)
    head = ACTLossHead(model)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=0.0)

    initial = first_step_loss(head, batch).item()
    carry = head.initial_carry(batch)
    for _ in range(80):
        carry, loss, metrics, _, _ = head(carry, batch)
        optimizer.zero_grad()
        (loss / BATCH).backward()
        optimizer.step()
        carry = carry.detach()
    final = first_step_loss(head, batch).item()

    assert final < 0.4 * initial, (initial, final)
    assert metrics["lm_loss"].isfinite()


def test_paper_configs_have_the_papers_parameter_counts():
    counts = paper_parameter_counts()
    hidden, vocab = 512, {"arc": 12, "sudoku": 11}
    channel_mlp = 3 * hidden * swiglu_width(hidden, 4.0)  # gate, up, down: 512 x 1536 each
    attention = 4 * hidden * hidden  # q, k, v, o
    # mlp_t's SwiGLU over 81 + 16 positions: width 2/3 * 4 * 97 rounded up to 512.
    sequence_mlp = 3 * (81 + 16) * swiglu_width(81 + 16, 4.0)
    heads = {task: 2 * v * hidden + 2 * hidden + 2 for task, v in vocab.items()}  # embed, lm, q
    assert counts["trm_att_arc"] == 2 * (attention + channel_mlp) + heads["arc"] == 6_829_058
    assert counts["trm_mlp_sudoku"] == 2 * (sequence_mlp + channel_mlp) + heads["sudoku"] == 5_028_866


def test_puzzle_embeddings_are_not_counted():
    small = model_context(VOCAB, SEQ, num_puzzle_identifiers=1)
    large = model_context(VOCAB, SEQ, num_puzzle_identifiers=1000)
    config = TRMConfig(**dict(TINY, L_layers=1))
    assert count_parameters(TRM(config, small)) == count_parameters(TRM(config, large))
